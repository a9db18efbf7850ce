# troupe_add_test(NAME SOURCES src... [LIBS lib...] [LABELS label...])
# One Boost.Test executable per unit, registered with ctest under NAME.
function(troupe_add_test name)
  cmake_parse_arguments(T "" "" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(test_${name} ${T_SOURCES})
  target_compile_definitions(test_${name} PRIVATE BOOST_TEST_DYN_LINK
                             TROUPE_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
  target_include_directories(test_${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests
                             ${PROJECT_SOURCE_DIR}/runtime ${PROJECT_SOURCE_DIR}/actors)
  target_link_libraries(test_${name} PRIVATE Boost::unit_test_framework troupe_warnings ${T_LIBS})
  add_test(NAME ${name} COMMAND test_${name})
  set_tests_properties(${name} PROPERTIES TIMEOUT 300 LABELS "${T_LABELS}")
endfunction()
