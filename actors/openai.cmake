# The OpenAI-compatible model backend (actors/openai_model.cpp), its HTTP/1.1 client on
# Boost.Beast over OpenSSL (runtime/http_client.cpp) and the OpenAI-compatible server over any
# model actor (actors/openai_server.cpp, `troupe serve`). Included from actors/CMakeLists.txt.
find_package(Boost 1.81 REQUIRED)
find_package(OpenSSL REQUIRED)
target_sources(troupe PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/openai_model.cpp
  ${CMAKE_CURRENT_LIST_DIR}/openai_server.cpp
  ${PROJECT_SOURCE_DIR}/runtime/http_client.cpp)
target_link_libraries(troupe PRIVATE Boost::headers OpenSSL::SSL OpenSSL::Crypto)
