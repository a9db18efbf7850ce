# Run traces (include/troupe/trace.hpp): Chrome Trace Event Format JSON for Perfetto.
target_sources(troupe PRIVATE trace.cpp)
