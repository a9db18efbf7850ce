# The OpenAI-compatible model backend (actors/openai_model.cpp) and its HTTP/1.1 client on
# Boost.Beast over OpenSSL (runtime/http_client.cpp). Included from actors/CMakeLists.txt.
find_package(Boost 1.81 REQUIRED)
find_package(OpenSSL REQUIRED)
target_sources(troupe PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/openai_model.cpp
  ${PROJECT_SOURCE_DIR}/runtime/http_client.cpp)
target_link_libraries(troupe PRIVATE Boost::headers OpenSSL::SSL OpenSSL::Crypto)
