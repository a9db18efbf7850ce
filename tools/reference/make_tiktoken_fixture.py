#!/usr/bin/env python3
"""Writes the fixtures of tests/formats/test_tiktoken.cpp and of the Kimi chat-template test.

tests/fixtures/kimi_tokenizer/
  tiktoken.model         a small byte-level BPE vocabulary trained here (all 256 bytes are ranks),
                         in tiktoken's format: base64 of the token bytes, a space, the rank
  tokenizer_config.json  Kimi's special tokens right after the ranks (names, ids relative to the
                         first special id, "special" flags and bos/eos as in Kimi-K2-Instruct's file)
  expected.json          tiktoken's own encodings of varied strings (tiktoken.Encoding with Kimi's
                         pat_str, the ranks above and the 256 special/reserved tokens, built exactly
                         as Kimi's tokenization_kimi.py builds it)
  expected_prompts.json  chat_template.jinja rendered by transformers' own chat-template renderer
                         (transformers.utils.chat_template_utils.render_jinja_template) for a few
                         conversations, with the inputs troupe's kimi_k2_prompt gets

Run in a venv with `pip install tiktoken regex jinja2 transformers` (no torch needed):
  python tools/reference/make_tiktoken_fixture.py [--out tests/fixtures/kimi_tokenizer]

The vocabulary is not Kimi's (163,584 ranks, 2.8 MB): the point is that our encoder reproduces
tiktoken's algorithm (split pattern, rank-ordered merges, direct lookups, special tokens) exactly.
"""

import argparse
import base64
import collections
import json
import pathlib
import random

import regex
import tiktoken

# Kimi's split pattern, as tokenization_kimi.py has it (Rust-regex class intersection `&&`).
KIMI_PAT_STR = "|".join([
    r"""[\p{Han}]+""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""",
    r""" ?[^\s\p{L}\p{N}]+[\r\n]*""",
    r"""\s*[\r\n]+""",
    r"""\s+(?!\S)""",
    r"""\s+""",
])

NUM_RESERVED_SPECIAL_TOKENS = 256  # tokenization_kimi.py

# Kimi-K2-Instruct's added_tokens_decoder, as offsets from the first special id (163584 there):
# (offset, content, special flag). The tool-call markers are "special": false in that file.
KIMI_SPECIALS = [
    (0, "[BOS]", True),
    (1, "[EOS]", True),
    (2, "<|im_end|>", True),
    (3, "<|im_user|>", True),
    (4, "<|im_assistant|>", True),
    (6, "<|start_header_id|>", True),
    (7, "<|end_header_id|>", True),
    (9, "[EOT]", True),
    (10, "<|im_system|>", True),
    (11, "<|tool_calls_section_begin|>", False),
    (12, "<|tool_calls_section_end|>", False),
    (13, "<|tool_call_begin|>", False),
    (14, "<|tool_call_argument_begin|>", False),
    (15, "<|tool_call_end|>", False),
    (17, "<|im_middle|>", True),
]

CORPUS = """
The quick brown fox jumps over the lazy dog. It's what they'd said: we're here, you've seen it,
I'm sure they'll come. THE QUICK BROWN FOX! HTTPServer, XMLHttpRequest, McDonald's, iPhone, eBay.
Tokenizers split text into pieces with a regular expression, then merge byte pairs by rank.
The model reads tokens, not characters; the tokenizer must match the one it was trained with.
Numbers: 1, 12, 123, 1234, 12345, 3.14159, 2.71828, 1e-9, 0x7fff, 65536, 2025-07-11, 10:30:00.
Prices $19.99, €5, ¥300, 50% off; phone +1 (555) 010-9999; version v0.17.6, build #4821.
人工智能正在改变世界。我们使用分词器把文本切成词元，然后模型逐个预测下一个词元。
月之暗面发布了Kimi大模型，它支持长上下文和工具调用。今天天气很好，我们去公园散步吧！
中文、日本語、한국어、English mixed: 你好world，こんにちは世界，안녕하세요 세계.
def encode(self, text: str) -> list[int]:
    ids = []
    for piece in self.pattern.findall(text):
        ids.extend(self.bpe(piece.encode("utf-8")))
    return ids

int main(int argc, char** argv) {
  std::vector<int32_t> tokens = tokenizer.encode(argv[1]);
  for (auto t : tokens) printf("%d\\n", t);
  return 0;
}
{"name": "get_weather", "arguments": {"city": "Beijing", "unit": "celsius"}, "id": 42}
SELECT name, count(*) FROM users WHERE created_at > '2024-01-01' GROUP BY name ORDER BY 2 DESC;
    indented line with trailing spaces   
\t\ttabbed\tcolumns\tof\tdata
Ünïcödé äccents: café, naïve, résumé, Zürich, São Paulo, Ελληνικά, Русский язык, العربية, हिन्दी.
Emoji: 😀 👍🏽 🚀 ❤️ 🇨🇳 👨‍👩‍👧 — and dashes – … “quotes” «guillemets».
"""


def kimi_regex():
    # The `regex` module does Rust-style class intersection in its V1 mode.
    return regex.compile(KIMI_PAT_STR, flags=regex.V1)


def train(text, n_merges):
    """Plain byte-pair training over the pieces of Kimi's pattern; ranks 0..255 are the bytes."""
    pat = kimi_regex()
    words = collections.Counter(tuple(bytes([b]) for b in p.encode("utf-8"))
                                for p in pat.findall(text))
    ranks = {bytes([b]): b for b in range(256)}
    for _ in range(n_merges):
        pairs = collections.Counter()
        for w, c in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] += c
        if not pairs:
            break
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))[0]
        merged = best[0] + best[1]
        if merged in ranks:  # two different pairs can spell the same bytes
            pass
        else:
            ranks[merged] = len(ranks)
        nw = collections.Counter()
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(merged)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            nw[tuple(out)] += c
        words = nw
    return ranks


def encoding(ranks, specials):
    return tiktoken.Encoding(name="kimi-fixture", pat_str=KIMI_PAT_STR, mergeable_ranks=ranks,
                             special_tokens=specials)


def test_strings(rng):
    s = [
        "",
        "hello",
        "Hello world",
        "The quick brown fox jumps over the lazy dog.",
        "It's, they'd, we're, you've, I'm, they'll, she's, IT'S, THEY'LL, We'Re",
        "HTTPServer XMLHttpRequest McDonald's iPhone eBay CamelCaseWord snake_case_word",
        "1 12 123 1234 12345 123456 1234567 3.14159 1e-9 0x7fff",
        "2025-07-11T10:30:00Z +1 (555) 010-9999 $19.99 €5 ¥300 50%",
        "人工智能正在改变世界。",
        "月之暗面发布了Kimi大模型，它支持长上下文和工具调用。",
        "中文English混合text，数字123和符号！",
        "日本語のテキストとカタカナ、ひらがな。",
        "한국어 텍스트입니다.",
        "Ελληνικά και Русский язык и العربية",
        "café naïve résumé Zürich São Paulo",
        "😀 👍🏽 🚀 ❤️ 🇨🇳 👨‍👩‍👧",
        "   leading spaces",
        "trailing spaces   ",
        "a  b   c    d",
        "line one\nline two\n\nline four\r\nwindows\r\n",
        "\n\n\n",
        "\t\ttabs\tand\tspaces  \t ",
        "  \n  \n",
        "Hello!!! What??? Yes... (ok) [fine] {done} <tag/> a->b a=>b a::b",
        "def f(x):\n    return x ** 2  # square\n",
        "int main() {\n  printf(\"%d\\n\", 42);\n  return 0;\n}\n",
        "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Beijing\"}}",
        "SELECT * FROM t WHERE a > 10 AND b <> 'x';",
        "<|im_end|>",
        "<|im_user|>user<|im_middle|>hi<|im_end|><|im_assistant|>assistant<|im_middle|>",
        "text before [BOS] and after [EOS] and [EOT]",
        "<|tool_calls_section_begin|><|tool_call_begin|>functions.f:0<|tool_call_argument_begin|>{\"a\":1}<|tool_call_end|><|tool_calls_section_end|>",
        "almost special <|im_end| and <|im_endx|> and <im_end>",
        " supercalifragilisticexpialidocious",
        " supercalifragilisticexpialidociousness",
        "量子纠缠态",
        "量子纠缠态的",
        "x" * 1000,
        "ab" * 700,
        "超长的中文" * 150,
        "9" * 100,
        " " * 50 + "x",
        "Ǆemal ǅungla ǆ titlecase letters and ʰmodifier",
        "combining: e\u0301 a\u0308 n\u0303 \u0301alone",
        "ſ long s: it'ſ, and Kelvin \u212a and 'S 'K",
        "\u00a0nbsp\u2003emspace\u3000ideographic space\u2028line sep",
        "control\x00char\x01\x1f\x7f",
        "中文，标点。“引号”（括号）",
        "〃々〆〇 CJK symbols and 々 iteration mark",
        "\U00020000\U0002A6DF extension B han",
        "mixed日本語and中文",
        "mongolian\u180evowel separator\u180e and next\u0085line",
    ]
    # A few random strings of printable characters drawn from the corpus alphabet.
    alphabet = sorted(set(CORPUS))
    for _ in range(6):
        s.append("".join(rng.choice(alphabet) for _ in range(rng.randint(20, 80))))
    return s


def write_tokenizer(out):
    ranks = train(CORPUS * 3, 1400)
    # Tokens whose pieces cannot be reached by merges: tiktoken maps a piece that is itself a
    # token straight to it, which the encoder under test must do too.
    for direct in [" supercalifragilisticexpialidocious", "量子纠缠态"]:
        b = direct.encode("utf-8")
        if b not in ranks:
            ranks[b] = len(ranks)
    n = len(ranks)
    by_rank = sorted(ranks.items(), key=lambda kv: kv[1])
    assert [r for _, r in by_rank] == list(range(n))
    with open(out / "tiktoken.model", "w", encoding="ascii") as f:
        for tok, r in by_rank:
            f.write(f"{base64.b64encode(tok).decode()} {r}\n")

    decoder = {}
    for off, content, special in KIMI_SPECIALS:
        decoder[str(n + off)] = {"content": content, "lstrip": False, "normalized": False,
                                 "rstrip": False, "single_word": False, "special": special}
    config = {
        "added_tokens_decoder": decoder,
        "additional_special_tokens": ["<|im_end|>", "<|im_user|>", "<|im_assistant|>",
                                      "<|start_header_id|>", "<|end_header_id|>", "[EOT]",
                                      "<|im_system|>", "<|im_middle|>"],
        "bos_token": "[BOS]",
        "clean_up_tokenization_spaces": False,
        "eos_token": "[EOS]",
        "extra_special_tokens": {},
        "model_max_length": 1000000000000000019884624838656,
        "pad_token": "[EOS]",
        "tokenizer_class": "TikTokenTokenizer",
        "unk_token": "[EOS]",
    }
    with open(out / "tokenizer_config.json", "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, ensure_ascii=False)
        f.write("\n")

    # As tokenization_kimi.py: every id in [n, n + 256) is a tiktoken special token.
    named = {n + off: content for off, content, _ in KIMI_SPECIALS}
    specials = {named.get(i, f"<|reserved_token_{i}|>"): i
                for i in range(n, n + NUM_RESERVED_SPECIAL_TOKENS)}
    enc = encoding(ranks, specials)

    rng = random.Random(1234)
    cases = []
    for s in test_strings(rng):
        case = {"text": s, "ordinary": enc.encode(s, disallowed_special=())}
        assert enc.decode(case["ordinary"]) == s
        special = enc.encode(s, allowed_special="all")
        if special != case["ordinary"]:  # absent: the same as "ordinary"
            case["special"] = special
        cases.append(case)
    expected = {
        "num_ranks": n,
        "vocab_size": enc.n_vocab,
        "bos_id": specials["[BOS]"],
        "eos_id": specials["[EOS]"],
        "reserved_example": [f"<|reserved_token_{n + 5}|>", n + 5],
        "cases": cases,
    }
    with open(out / "expected.json", "w", encoding="utf-8") as f:
        # One case a line keeps the file small and its diffs readable.
        head = {k: v for k, v in expected.items() if k != "cases"}
        f.write(json.dumps(head, ensure_ascii=False)[:-1] + ', "cases": [\n')
        f.write(",\n".join(json.dumps(c, ensure_ascii=False) for c in cases))
        f.write("\n]}\n")
    print(f"{n} ranks, {enc.n_vocab} ids, {len(cases)} cases")


# --- chat template ------------------------------------------------------------------------------
# Call ids are in Kimi's own form, functions.NAME:IDX with IDX counting the calls of the whole
# conversation: the template prints ids as given, and kimi_k2_prompt leaves such ids alone.

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather",
        "description": "Get the weather of a city. Use it when the user asks about weather.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name, e.g. 北京"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "read_file",
        "description": "Read a file \"as is\"\nand return its text.",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}},
                       "required": ["path"], "additionalProperties": False}}},
]


def call(cid, name, args):
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}


CONVERSATIONS = [
    {"name": "plain", "tools": None, "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "How are you?"}]},
    {"name": "default_system", "tools": None, "messages": [
        {"role": "user", "content": "你好，请介绍一下你自己。"}]},
    {"name": "tool_declaration", "tools": TOOLS, "messages": [
        {"role": "system", "content": "You can use tools."},
        {"role": "user", "content": "Weather in Beijing?"}]},
    {"name": "tool_call_and_result", "tools": TOOLS, "messages": [
        {"role": "user", "content": "Weather in Beijing?"},
        {"role": "assistant", "content": "Let me check.",
         "tool_calls": [call("functions.get_weather:0", "get_weather", "{\"city\": \"Beijing\"}")]},
        {"role": "tool", "tool_call_id": "functions.get_weather:0", "name": "get_weather",
         "content": "{\"temp\": 21, \"sky\": \"clear\"}"}]},
    {"name": "parallel_calls_multi_turn", "tools": TOOLS, "messages": [
        {"role": "system", "content": "Be helpful."},
        {"role": "user", "content": "Compare Paris and Rome, then read notes.txt"},
        {"role": "assistant", "content": "",
         "tool_calls": [call("functions.get_weather:0", "get_weather", "{\"city\":\"Paris\"}"),
                        call("functions.get_weather:1", "get_weather", "{\"city\":\"Rome\",\"unit\":\"celsius\"}")]},
        {"role": "tool", "tool_call_id": "functions.get_weather:0", "name": "get_weather",
         "content": "18C"},
        {"role": "tool", "tool_call_id": "functions.get_weather:1", "name": "get_weather",
         "content": "24C"},
        {"role": "assistant", "content": "Rome is warmer.",
         "tool_calls": [call("functions.read_file:2", "read_file", "{\"path\":\"notes.txt\"}")]},
        {"role": "tool", "tool_call_id": "functions.read_file:2", "name": "read_file", "content": "line 1\nline 2\n"},
        {"role": "assistant", "content": "Done: Rome is warmer; notes read."},
        {"role": "user", "content": "Thanks!"}]},
    {"name": "unnamed_tool_result_no_generation_prompt", "tools": None,
     "add_generation_prompt": False, "messages": [
        {"role": "user", "content": "Run it"},
        {"role": "assistant", "content": "",
         "tool_calls": [call("functions.read_file:0", "read_file", "{\"path\":\"/tmp/a b.txt\"}")]},
        {"role": "tool", "tool_call_id": "functions.read_file:0", "content": "error: not found"},
        {"role": "assistant", "content": "The file does not exist."}]},
]


def write_prompts(out):
    from transformers.utils.chat_template_utils import render_jinja_template
    template = (out / "chat_template.jinja").read_text(encoding="utf-8")
    cases = []
    for conv in CONVERSATIONS:
        agp = conv.get("add_generation_prompt", True)
        rendered, _ = render_jinja_template(conversations=[conv["messages"]], tools=conv["tools"],
                                            chat_template=template, add_generation_prompt=agp)
        cases.append({"name": conv["name"], "tools": conv["tools"] or [],
                      "messages": conv["messages"], "add_generation_prompt": agp,
                      "prompt": rendered[0]})
    with open(out / "expected_prompts.json", "w", encoding="utf-8") as f:
        json.dump({"template": "chat_template.jinja", "cases": cases}, f, ensure_ascii=False,
                  indent=1)
        f.write("\n")
    print(f"{len(cases)} prompts")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(pathlib.Path(__file__).resolve().parents[2] /
                                         "tests" / "fixtures" / "kimi_tokenizer"))
    args = ap.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_tokenizer(out)
    write_prompts(out)


if __name__ == "__main__":
    main()
