# Installs libtroupe, the public headers (the whole include/troupe tree) and a CMake package, so
# that after `cmake --install <build> --prefix P` a project with CMAKE_PREFIX_PATH=P can call
# `find_package(troupe CONFIG REQUIRED)` and link `troupe::troupe`.
# Debian's CAF ships no CMake config, so FindCAF.cmake travels with the package.
include(CMakePackageConfigHelpers)

set(TROUPE_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/troupe"
    CACHE STRING "Where the troupe CMake package files are installed, relative to the prefix")
mark_as_advanced(TROUPE_INSTALL_CMAKEDIR)

install(TARGETS troupe EXPORT troupe_targets
  LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}"
  ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}"
  RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}")
install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/troupe" DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")

install(EXPORT troupe_targets
  NAMESPACE troupe::
  FILE troupeTargets.cmake
  DESTINATION "${TROUPE_INSTALL_CMAKEDIR}")

configure_package_config_file("${PROJECT_SOURCE_DIR}/cmake/troupeConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/troupeConfig.cmake"
  INSTALL_DESTINATION "${TROUPE_INSTALL_CMAKEDIR}")
write_basic_package_version_file("${PROJECT_BINARY_DIR}/troupeConfigVersion.cmake"
  VERSION "${PROJECT_VERSION}"
  COMPATIBILITY SameMinorVersion)
install(FILES
  "${PROJECT_BINARY_DIR}/troupeConfig.cmake"
  "${PROJECT_BINARY_DIR}/troupeConfigVersion.cmake"
  "${PROJECT_SOURCE_DIR}/cmake/FindCAF.cmake"
  DESTINATION "${TROUPE_INSTALL_CMAKEDIR}")
