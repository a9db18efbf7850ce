// The host side of the GPU backend (include/troupe/gpu/), one file per unit, in one executable:
// placement, all-to-all plan, graph buckets, device memory, the NCCL id message, the deadline wait.
#define BOOST_TEST_MODULE gpu_host
#include <boost/test/unit_test.hpp>
