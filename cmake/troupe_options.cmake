# Compiler warnings and sanitizer switches shared by every troupe target.
add_library(troupe_warnings INTERFACE)
target_compile_options(troupe_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter>)

set(TROUPE_SANITIZE "" CACHE STRING "Sanitizers to build with, e.g. address,undefined or thread")
if(TROUPE_SANITIZE)
  add_compile_options(-fsanitize=${TROUPE_SANITIZE} -fno-omit-frame-pointer)
  add_link_options(-fsanitize=${TROUPE_SANITIZE})
endif()
