#pragma once
// How Boost.Test prints the CPU kernels' status, quant_type and isa in a failed check.

#include <ostream>

#include "cpu/quant.hpp"

namespace troupe::kernels::cpu {
inline std::ostream& operator<<(std::ostream& os, status s) { return os << to_string(s); }
inline std::ostream& operator<<(std::ostream& os, quant_type t) { return os << type_name(t); }
inline std::ostream& operator<<(std::ostream& os, isa l) { return os << to_string(l); }
}  // namespace troupe::kernels::cpu
