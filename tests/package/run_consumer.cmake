# Driver of the package_consumer test (cmake -P). Every step must succeed, or the test fails:
#   1. cmake --install TROUPE_BUILD_DIR --prefix WORK_DIR/prefix   (prefix wiped first)
#   2. configure CONSUMER_SOURCE_DIR with CMAKE_PREFIX_PATH=WORK_DIR/prefix (build dir wiped first)
#   3. check that troupe was found in that prefix, not somewhere else on the machine
#   4. build the consumer, run it, and compare its output with what it must print
foreach(var TROUPE_BUILD_DIR TROUPE_VERSION CONSUMER_SOURCE_DIR WORK_DIR GENERATOR CXX_COMPILER)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "run_consumer.cmake: -D${var}=... is required")
  endif()
endforeach()

set(prefix "${WORK_DIR}/prefix")
set(consumer_build "${WORK_DIR}/build")
if(NOT CONFIG)
  set(CONFIG Release)
endif()

# Runs a command; stops the test with `what` and the command's exit status if it fails.
function(run_step what)
  message(STATUS "package_consumer: ${what}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "package_consumer: ${what} failed (${rc}): ${ARGN}")
  endif()
endfunction()

file(REMOVE_RECURSE "${prefix}" "${consumer_build}")

run_step("install ${TROUPE_BUILD_DIR} into ${prefix}"
  "${CMAKE_COMMAND}" --install "${TROUPE_BUILD_DIR}" --prefix "${prefix}" --config "${CONFIG}")

set(configure_args
  -S "${CONSUMER_SOURCE_DIR}" -B "${consumer_build}" -G "${GENERATOR}"
  "-DCMAKE_BUILD_TYPE=${CONFIG}"
  "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}"
  "-DCMAKE_PREFIX_PATH=${prefix}"
  "-DTROUPE_REQUIRED_VERSION=${TROUPE_VERSION}")
if(CXX_COMPILER_LAUNCHER)
  list(APPEND configure_args "-DCMAKE_CXX_COMPILER_LAUNCHER=${CXX_COMPILER_LAUNCHER}")
endif()
# A sanitized libtroupe needs its sanitizer runtime loaded first: build the consumer the same way.
if(SANITIZE)
  list(APPEND configure_args
    "-DCMAKE_CXX_FLAGS=-fsanitize=${SANITIZE} -fno-omit-frame-pointer"
    "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=${SANITIZE}")
endif()
run_step("configure the consumer against ${prefix}" "${CMAKE_COMMAND}" ${configure_args})

file(STRINGS "${consumer_build}/CMakeCache.txt" troupe_dir_line REGEX "^troupe_DIR:")
string(REGEX REPLACE "^troupe_DIR:[A-Z]+=" "" troupe_dir "${troupe_dir_line}")
file(REAL_PATH "${prefix}" real_prefix)
if(troupe_dir STREQUAL "")
  message(FATAL_ERROR "package_consumer: troupe_DIR is not set in the consumer's cache")
endif()
file(REAL_PATH "${troupe_dir}" real_troupe_dir)
string(FIND "${real_troupe_dir}/" "${real_prefix}/" at)
if(NOT at EQUAL 0)
  message(FATAL_ERROR "package_consumer: troupe was found in ${troupe_dir}, not in ${prefix}")
endif()

run_step("build the consumer" "${CMAKE_COMMAND}" --build "${consumer_build}" --config "${CONFIG}")

set(consumer_exe "${consumer_build}/troupe_consumer")
if(NOT EXISTS "${consumer_exe}")
  set(consumer_exe "${consumer_build}/${CONFIG}/troupe_consumer")  # multi-config generators
endif()
if(NOT EXISTS "${consumer_exe}")
  message(FATAL_ERROR "package_consumer: no troupe_consumer program in ${consumer_build}")
endif()
message(STATUS "package_consumer: run ${consumer_exe}")
set(run_env "")
if(SANITIZE MATCHES "thread")
  # Debian's libcaf_core is not built with ThreadSanitizer, which therefore cannot see CAF's own
  # synchronisation and reports races inside every spawn. This test checks the package, not
  # threading: keep TSan quiet here.
  set(run_env "TSAN_OPTIONS=report_bugs=0")
endif()
execute_process(COMMAND "${CMAKE_COMMAND}" -E env ${run_env} "${consumer_exe}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out)
message("${out}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "package_consumer: the consumer exited with ${rc}")
endif()
set(expected [=[error: timeout: tool 'search' did not answer within 30 s; raise the tool timeout
tool_call: troupe.tool_call("call_1", "search", "{\"q\":\"actors\"}")
caf: 21 * 2 = 42 from a spawned actor
]=])
if(NOT out STREQUAL expected)
  message(FATAL_ERROR "package_consumer: the consumer printed\n${out}\ninstead of\n${expected}")
endif()
message(STATUS "package_consumer: passed")
