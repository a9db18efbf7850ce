# cmake -DPROGRAM=exe [-DARGS=a;b] -DEXPECTED=file -P check_output.cmake
# Runs PROGRAM and fails unless it exits 0 and its stdout equals the file EXPECTED exactly.
execute_process(COMMAND ${PROGRAM} ${ARGS} OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${PROGRAM} exited with ${rc}\nstdout:\n${out}\nstderr:\n${err}")
endif()
file(READ ${EXPECTED} expected)
if(NOT out STREQUAL expected)
  message(FATAL_ERROR "output of ${PROGRAM} differs from ${EXPECTED}\n--- got:\n${out}\n--- expected:\n${expected}")
endif()
message(STATUS "output matches ${EXPECTED}")
