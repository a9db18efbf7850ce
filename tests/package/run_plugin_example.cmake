# Driver of the plugin_example test (cmake -P): the third-party plugin path, end to end.
#   1. cmake --install TROUPE_BUILD_DIR --prefix WORK_DIR/prefix   (prefix wiped first)
#   2. configure SAMPLE_DIR (samples/plugin_example) against that prefix only, and check that
#      troupe was found there
#   3. build the sample's plugin (troupe::plugin_sdk) and program (troupe::troupe)
#   4. check that the plugin exports troupe_plugin_entry and nothing else (when nm is available)
#   5. run the program (it loads the plugin into a swarm) and compare with expected_output.txt
foreach(var TROUPE_BUILD_DIR SAMPLE_DIR WORK_DIR GENERATOR CXX_COMPILER)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "run_plugin_example.cmake: -D${var}=... is required")
  endif()
endforeach()
set(prefix "${WORK_DIR}/prefix")
set(build "${WORK_DIR}/build")
if(NOT CONFIG)
  set(CONFIG Release)
endif()

function(run_step what)
  message(STATUS "plugin_example: ${what}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "plugin_example: ${what} failed (${rc}): ${ARGN}")
  endif()
endfunction()

file(REMOVE_RECURSE "${prefix}" "${build}")
run_step("install ${TROUPE_BUILD_DIR} into ${prefix}"
  "${CMAKE_COMMAND}" --install "${TROUPE_BUILD_DIR}" --prefix "${prefix}" --config "${CONFIG}")

set(configure_args -S "${SAMPLE_DIR}" -B "${build}" -G "${GENERATOR}"
  "-DCMAKE_BUILD_TYPE=${CONFIG}" "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}"
  "-DCMAKE_PREFIX_PATH=${prefix}")
if(CXX_COMPILER_LAUNCHER)
  list(APPEND configure_args "-DCMAKE_CXX_COMPILER_LAUNCHER=${CXX_COMPILER_LAUNCHER}")
endif()
if(SANITIZE)
  list(APPEND configure_args
    "-DCMAKE_CXX_FLAGS=-fsanitize=${SANITIZE} -fno-omit-frame-pointer"
    "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=${SANITIZE}")
endif()
run_step("configure ${SAMPLE_DIR} against ${prefix}" "${CMAKE_COMMAND}" ${configure_args})

file(STRINGS "${build}/CMakeCache.txt" troupe_dir_line REGEX "^troupe_DIR:")
string(REGEX REPLACE "^troupe_DIR:[A-Z]+=" "" troupe_dir "${troupe_dir_line}")
file(REAL_PATH "${prefix}" real_prefix)
file(REAL_PATH "${troupe_dir}" real_troupe_dir)
string(FIND "${real_troupe_dir}/" "${real_prefix}/" at)
if(troupe_dir STREQUAL "" OR NOT at EQUAL 0)
  message(FATAL_ERROR "plugin_example: troupe was found in '${troupe_dir}', not in ${prefix}")
endif()

run_step("build the sample" "${CMAKE_COMMAND}" --build "${build}" --config "${CONFIG}")

find_program(NM nm)
if(NM AND EXISTS "${build}/libword_count.so")
  execute_process(COMMAND "${NM}" -D --defined-only "${build}/libword_count.so"
                  OUTPUT_VARIABLE symbols RESULT_VARIABLE rc)
  string(REGEX REPLACE "[0-9a-f]+ [A-Za-z] " "" symbols "${symbols}")
  if(rc EQUAL 0 AND NOT symbols STREQUAL "troupe_plugin_entry\n")
    message(FATAL_ERROR "plugin_example: the plugin exports more than troupe_plugin_entry:\n${symbols}")
  endif()
endif()

set(exe "${build}/plugin_example")
if(NOT EXISTS "${exe}")
  set(exe "${build}/${CONFIG}/plugin_example")
endif()
set(run_env "")
if(SANITIZE MATCHES "thread")
  set(run_env "TSAN_OPTIONS=report_bugs=0")  # Debian's CAF is not built with TSan (see run_consumer)
endif()
execute_process(COMMAND "${CMAKE_COMMAND}" -E env ${run_env} "${exe}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out)
message("${out}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "plugin_example: the program exited with ${rc}")
endif()
file(READ "${SAMPLE_DIR}/expected_output.txt" expected)
if(NOT out STREQUAL expected)
  message(FATAL_ERROR "plugin_example: the program printed\n${out}\ninstead of\n${expected}")
endif()
message(STATUS "plugin_example: passed")
