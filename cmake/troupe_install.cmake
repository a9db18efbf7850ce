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

# The plugin SDK for plugins built out of tree: troupe::plugin_sdk (the plugin headers, C++20 and
# the linker version script that exports troupe_plugin_entry alone, installed next to this package).
set_target_properties(troupe_plugin_headers PROPERTIES EXPORT_NAME plugin_sdk)
target_link_options(troupe_plugin_headers INTERFACE
  "$<INSTALL_INTERFACE:LINKER:--version-script=$<INSTALL_PREFIX>/${TROUPE_INSTALL_CMAKEDIR}/troupe_plugin.map>")
install(TARGETS troupe_plugin_headers EXPORT troupe_targets)
install(FILES "${PROJECT_SOURCE_DIR}/plugins/troupe_plugin.map" DESTINATION "${TROUPE_INSTALL_CMAKEDIR}")

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
