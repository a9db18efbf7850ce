# Tool plugins at run time: the loader actor (actors/plugin_loader.cpp), the plugin checks and the
# host wire protocol shared with troupe-plugin-host (runtime/plugin_*.cpp), and the host itself.
# Included from actors/CMakeLists.txt.
target_sources(troupe PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/plugin_loader.cpp
  ${PROJECT_SOURCE_DIR}/runtime/plugin_library.cpp
  ${PROJECT_SOURCE_DIR}/runtime/plugin_wire.cpp)
target_link_libraries(troupe PRIVATE ${CMAKE_DL_LIBS})
add_subdirectory(${PROJECT_SOURCE_DIR}/runtime/plugin_host ${PROJECT_BINARY_DIR}/runtime/plugin_host)
add_dependencies(troupe troupe_plugin_host)
