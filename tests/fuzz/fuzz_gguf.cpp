// libFuzzer harness for the GGUF reader (runtime/formats/gguf.cpp) and what a model builds from
// its metadata (the tokenizer and the chat template, runtime/llama): any bytes, read as a GGUF
// file, must either parse or throw troupe::error; never crash, read out of bounds, overflow or
// hang. A parsed file then has every metadata value read through every typed getter (each may
// throw troupe::error, nothing else) and the first and last byte of every tensor touched; a
// tokenizer built from it encodes and decodes a fixed text, and a chat template renders.
// Built and run by scripts/fuzz (clang, -fsanitize=fuzzer,address,undefined), not by CMake.

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "troupe/error.hpp"
#include "troupe/formats/gguf.hpp"
#include "troupe/llama/chat_template.hpp"
#include "troupe/llama/tokenizer.hpp"

namespace {

// The input as a file: an in-memory one (memfd) reached through /proc, rewritten per input.
struct input_file {
  int fd;
  std::string path;
};

const input_file& input() {
  static const input_file f = [] {
    const int fd = memfd_create("fuzz.gguf", 0);
    if (fd < 0) __builtin_trap();
    return input_file{fd, "/proc/self/fd/" + std::to_string(fd)};
  }();
  return f;
}

void write_input(const uint8_t* data, size_t size) {
  const int fd = input().fd;
  if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != static_cast<ssize_t>(size))
    __builtin_trap();
}

template <class F>
void may_throw(F&& f) {
  try {
    f();
  } catch (const troupe::error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  write_input(data, size);
  try {
    const auto g = troupe::gguf_file::open(input().path);
    for (const auto& kv : g.metadata()) {
      may_throw([&] { (void)g.get_string(kv.key); });
      may_throw([&] { (void)g.get_u32(kv.key); });
      may_throw([&] { (void)g.get_u64(kv.key); });
      may_throw([&] { (void)g.get_i64(kv.key); });
      may_throw([&] { (void)g.get_f32(kv.key); });
      may_throw([&] { (void)g.get_bool(kv.key); });
      may_throw([&] { (void)g.get_string_array(kv.key); });
      may_throw([&] { (void)g.get_int_array(kv.key); });
      may_throw([&] { (void)g.get_float_array(kv.key); });
    }
    volatile unsigned touched = 0;
    for (const auto& t : g.tensors()) {
      const auto b = t.bytes();
      if (!b.empty())
        touched = touched + static_cast<unsigned>(b.front()) + static_cast<unsigned>(b.back());
      (void)g.find_tensor(t.name);
    }
    may_throw([&] {
      const auto tok = troupe::llama::tokenizer::from_gguf(g);
      const std::string text = "<|im_start|>user\nthe 12 tests  in  Straße ✓ 🙂\t<|im_end|>";
      for (bool special : {false, true}) {
        const auto ids = tok.encode(text, true, special);
        (void)tok.decode(ids, special);
      }
      const int32_t n = tok.vocab_size();
      for (int32_t id = -1; id <= n && id < 4096; ++id) {
        (void)tok.token_to_piece(id, true);
        (void)tok.type(id);
        (void)tok.is_end_of_generation(id);
      }
      (void)tok.find("<|im_end|>");
    });
    may_throw([&] {
      const auto tpl = troupe::llama::chat_template::from_gguf(g);
      const troupe::llama::chat_message m[] = {{"system", "be brief"}, {"user", "hi"}};
      (void)tpl.apply(m, true);
    });
  } catch (const troupe::error&) {
  }
  return 0;
}
