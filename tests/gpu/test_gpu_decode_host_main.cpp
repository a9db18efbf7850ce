// The host side of the whole-model GPU decoder (include/troupe/gpu/cuda_decoder.hpp), one file
// per unit, in one executable: latent-cache page table and step packing, roofline weight bytes,
// INT4 expert stacks.
#define BOOST_TEST_MODULE gpu_decode_host
#include <boost/test/unit_test.hpp>
