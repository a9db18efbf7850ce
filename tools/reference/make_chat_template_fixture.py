#!/usr/bin/env python3
"""Writes tests/fixtures/llama/chat_templates.json: real models' chat templates rendered by Jinja.

For every template the fixture holds the template text, the model's BOS/EOS token texts, the
kind troupe must detect, and the rendering of each conversation below with and without
add_generation_prompt, exactly as HF transformers' apply_chat_template renders it:
transformers.utils.chat_template_utils.render_jinja_template when transformers is installed,
else the same environment built here (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks,
loopcontrols, raise_exception, strftime_now, transformers' tojson). Conversations a template
refuses (raise_exception, e.g. "System role not supported") are listed under "jinja_raises" with
the message; troupe applies its own stated rule there (chat_template.hpp) and the test does not
compare them. Conversations whose rendering troupe does not follow on purpose are left out with a
reason ("not_compared").

The date: templates that print today's date (Llama 3.x's "Today Date:", Mistral Small 3.2's
default system prompt) are rendered with strftime_now and date_string fixed to 26 Jul 2024, the
date Llama 3.1's template falls back to (troupe's default date option).

Sources (texts copied verbatim into the fixture):
  llama.cpp's models/templates/*.jinja and tests/test-chat-template.cpp, from the llama.cpp
  vendored by the llama-cpp-python 0.3.36 sdist (--llama-cpp);
  SmolLM2-135M-Instruct's tokenizer.chat_template (the GGUF troupe's tests use);
  meta-llama/Llama-2-13b-chat-hf, Meta-Llama-3-8B-Instruct, TinyLlama-1.1B-Chat-v1.0 /
  HuggingFaceH4/zephyr-7b-beta, mistralai/Mixtral-8x7B-Instruct-v0.1 and a CodeLlama-style
  <<SYS>> template with `| trim` (the forms quoted by HF's, TGI's and swift-jinja's own template
  tests) are written out below.

Where llama.cpp's C++ formatter (llm_chat_apply_template, used when llama.cpp runs without
--jinja) differs from the Jinja rendering, "llama_cpp_differs" says how; troupe follows Jinja.

Run (transformers optional):  python tools/reference/make_chat_template_fixture.py \\
  [--llama-cpp /tmp/llsrc/llama_cpp_python-0.3.36/vendor/llama.cpp] [--out FILE]
"""

import argparse
import datetime
import json
import pathlib
import re

FIXED_DATE = datetime.datetime(2024, 7, 26)

S = "You are a helpful assistant."
TOOL_CALL = ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
             '</tool_call>')
TOOL_RESPONSE = '<tool_response>\n{"temp": "18°C", "sky": "clear", "note": "say \\"hi\\"\\t"}\n</tool_response>'

CONVERSATIONS = [
    {"id": "user", "messages": [{"role": "user", "content": "Hello"}]},
    {"id": "system_user", "messages": [{"role": "system", "content": S},
                                       {"role": "user", "content": "Hello"}]},
    {"id": "multi_turn", "messages": [
        {"role": "system", "content": S},
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "What is 2+2?"}]},
    {"id": "multi_turn_no_system", "messages": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Bye"}]},
    {"id": "ends_with_assistant", "messages": [
        {"role": "system", "content": S},
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."}]},
    {"id": "whitespace", "messages": [
        {"role": "system", "content": "  Be terse.\n"},
        {"role": "user", "content": "\u3000 Hello \u00a0\n"},
        {"role": "assistant", "content": "   I am an assistant   "},
        {"role": "user", "content": "\tAnother question "}]},
    {"id": "non_ascii", "messages": [
        {"role": "user", "content": " Grüße! Что такое 東京? 🚀\n"},
        {"role": "assistant", "content": "東京は日本の首都です。"},
        {"role": "user", "content": "Ça va ?"}]},
    {"id": "reasoning_flag", "messages": [  # SmolLM3 reads /no_think off the system message
        {"role": "system", "content": "Answer briefly. /no_think\n"},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "\nHello."},
        {"role": "user", "content": "Bye"}]},
    {"id": "tool", "messages": [
        {"role": "system", "content": S},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": TOOL_CALL},
        {"role": "tool", "content": TOOL_RESPONSE}]},
]

TOOL_NOT_COMPARED = ("troupe renders a tool result as a user turn for this kind (the template "
                     "drops it, refuses it, or wants Mistral tool-call ids troupe does not make)")

# Templates quoted from their model repositories (not in llama.cpp's sdist).
LLAMA2_CHAT = ("{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
               "{% set system_message = messages[0]['content'] %}{% else %}"
               "{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
               "{% for message in loop_messages %}{% if (message['role'] == 'user') != "
               "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
               "user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and "
               "system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
               "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = "
               "message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + "
               "'[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == "
               "'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}"
               "{% endfor %}")
LLAMA2_TRIM = ("{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
               "{% set system_message = messages[0]['content'] %}{% else %}"
               "{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
               "{% for message in loop_messages %}{% if (message['role'] == 'user') != "
               "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
               "user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and "
               "system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
               "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = "
               "message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token "
               "+'[INST] ' + content | trim + ' [/INST]' }}{% elif message['role'] == 'system' %}"
               "{{ '<<SYS>>\\n' + content | trim + '\\n<</SYS>>\\n\\n' }}{% elif message['role'] "
               "== 'assistant' %}{{ ' ' + content | trim + ' ' + eos_token }}{% endif %}"
               "{% endfor %}")
MIXTRAL = ("{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != "
           "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
           "user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}"
           "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == "
           "'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only "
           "user and assistant roles are supported!') }}{% endif %}{% endfor %}")
LLAMA3 = ("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
          "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] "
          "| trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content "
          "%}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
          "'<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
ZEPHYR = ("{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + "
          "message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ "
          "'<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == "
          "'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif "
          "%}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n"
          "{% endfor %}")
SMOLLM2 = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
           "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
           "Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
           "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
           "{{ '<|im_start|>assistant\n' }}{% endif %}")

LLAMA3_DIFF = ("llama.cpp's llama3 formatter adds no BOS (the tokenizer does), prints no "
               "'Cutting Knowledge Date' system preamble and no system turn when there is none, "
               "and keeps role 'tool' as a header instead of 'ipython' with JSON-quoted content")
MISTRAL_V3_DIFF = ("llama.cpp puts the system message before the first user message; the Jinja "
                   "template puts it into the last message when that is a user message, and "
                   "drops it otherwise")

# (name, source, template text or models/templates file, bos, eos, kind, llama.cpp note,
#  conversations not compared {id: reason}).
TEMPLATES = [
    ("HuggingFaceTB/SmolLM2-135M-Instruct", "tokenizer.chat_template of the GGUF", SMOLLM2,
     "<|im_start|>", "<|im_end|>", "chatml",
     "llama.cpp's chatml formatter omits the default SmolLM system turn", {}),
    ("teknium/OpenHermes-2.5-Mistral-7B", "test-chat-template.cpp", "cpp:teknium/OpenHermes",
     "<s>", "<|im_end|>", "chatml", None, {}),
    ("Qwen/Qwen2.5-7B-Instruct", "models/templates", "Qwen-Qwen2.5-7B-Instruct.jinja",
     "<|endoftext|>", "<|im_end|>", "chatml",
     "llama.cpp's chatml formatter omits Qwen's default system turn",
     {"tool": "Qwen's template turns a tool result into a user turn wrapped in <tool_response>; "
              "troupe's ChatML keeps role 'tool' (SmolLM2's behaviour)"}),
    ("meta-llama/Llama-2-13b-chat-hf", "model repository", LLAMA2_CHAT, "<s>", "</s>",
     "llama2_sys",
     "llama.cpp (llama2-sys-strip) adds BOS only at the start via the tokenizer, not before each "
     "[INST], and writes the assistant turn without the spaces around it",
     {"tool": TOOL_NOT_COMPARED}),
    ("CodeLlama-style <<SYS>> template with | trim (TGI's test template)", "TGI tests",
     LLAMA2_TRIM, "<s>", "</s>", "llama2_sys",
     "llama.cpp detects this as llama2-sys (it looks for '.strip()' and 'bos_token + '[INST]' "
     "literally) and then neither trims nor adds BOS inside the history",
     {"tool": TOOL_NOT_COMPARED}),
    ("mistralai/Mixtral-8x7B-Instruct-v0.1", "model repository", MIXTRAL, "<s>", "</s>",
     "llama2", "llama.cpp's llama2 formatter writes 'content</s>' the same way but adds "
     "BOS through the tokenizer", {"tool": TOOL_NOT_COMPARED}),
    ("mistralai/Mistral-7B-Instruct-v0.2 (old)", "test-chat-template.cpp",
     "cpp:mistralai/Mistral-7B-Instruct-v0.2 (NOTE: Old pre-v1", "<s>", "</s>", "llama2", None,
     {"tool": TOOL_NOT_COMPARED}),
    ("mistralai/Mistral-7B-Instruct-v0.2 (v1)", "test-chat-template.cpp",
     "cpp:mistralai/Mistral-7B-Instruct-v0.2 (mistralai 'v1'", "<s>", "</s>", "mistral_v1", None,
     {"tool": TOOL_NOT_COMPARED}),
    ("mistralai/Mistral-Large-Instruct-2407 (v3)", "test-chat-template.cpp",
     "cpp:Mistral-Large-Instruct-2407", "<s>", "</s>", "mistral_v3", MISTRAL_V3_DIFF,
     {"tool": TOOL_NOT_COMPARED}),
    ("mistralai/Mistral-Nemo-Instruct-2407 (v3-tekken)", "models/templates",
     "mistralai-Mistral-Nemo-Instruct-2407.jinja", "<s>", "</s>", "mistral_v3_tekken",
     MISTRAL_V3_DIFF, {"tool": TOOL_NOT_COMPARED}),
    ("mistralai/Mistral-Large-Instruct-2411 (v7)", "test-chat-template.cpp",
     "cpp:mistralai/Mistral-Large-Instruct-2411", "<s>", "</s>", "mistral_v7", None,
     {"tool": TOOL_NOT_COMPARED}),
    ("mistralai/Mistral-Small-3.2-24B-Instruct-2506 (v7-tekken)", "models/templates",
     "Mistral-Small-3.2-24B-Instruct-2506.jinja", "<s>", "</s>", "mistral_v7_tekken",
     "llama.cpp detects v7 (with spaces) for every [SYSTEM_PROMPT] template and omits the "
     "default system prompt",
     {"tool": TOOL_NOT_COMPARED, "non_ascii": "size (the default system prompt is 4 KB)",
      "multi_turn_no_system": "size (the default system prompt is 4 KB)"}),
    ("mistralai/Ministral-3-14B-Reasoning-2512 (v7-tekken)", "models/templates",
     "mistralai-Ministral-3-14B-Reasoning-2512.jinja", "<s>", "</s>", "mistral_v7_tekken",
     "llama.cpp detects v7 (with spaces) and omits the default system prompt",
     {"tool": TOOL_NOT_COMPARED}),
    ("unsloth/Devstral-Small-2507 (v7-tekken)", "models/templates",
     "unsloth-mistral-Devstral-Small-2507.jinja", "<s>", "</s>", "mistral_v7_tekken",
     "llama.cpp detects v7 (with spaces) and omits the default system prompt",
     {"tool": TOOL_NOT_COMPARED, "non_ascii": "size (the default system prompt is 8 KB)",
      "multi_turn_no_system": "size (the default system prompt is 8 KB)"}),
    ("meta-llama/Meta-Llama-3-8B-Instruct", "model repository", LLAMA3, "<|begin_of_text|>",
     "<|eot_id|>", "llama3", "llama.cpp adds BOS through the tokenizer",
     {"tool": "Llama 3.0's template prints role 'tool' as a header; troupe uses Llama 3.1's "
              "'ipython' turn for every llama3 template"}),
    ("meta-llama/Llama-3.1-8B-Instruct", "models/templates",
     "meta-llama-Llama-3.1-8B-Instruct.jinja", "<|begin_of_text|>", "<|eot_id|>", "llama3",
     LLAMA3_DIFF, {}),
    ("meta-llama/Llama-3.2-3B-Instruct", "models/templates",
     "meta-llama-Llama-3.2-3B-Instruct.jinja", "<|begin_of_text|>", "<|eot_id|>", "llama3",
     LLAMA3_DIFF, {}),
    ("meta-llama/Llama-3.3-70B-Instruct", "models/templates",
     "meta-llama-Llama-3.3-70B-Instruct.jinja", "<|begin_of_text|>", "<|eot_id|>", "llama3",
     LLAMA3_DIFF, {}),
    ("TinyLlama/TinyLlama-1.1B-Chat-v1.0 (= HuggingFaceH4/zephyr-7b-beta)", "model repository",
     ZEPHYR, "<s>", "</s>", "zephyr",
     "llama.cpp detects this template as glmedge (no literal <|endoftext|>), which writes no "
     "</s> after turns; its zephyr formatter writes <|endoftext|> instead of the EOS token",
     {"tool": TOOL_NOT_COMPARED}),
    ("microsoft/Phi-3.5-mini-instruct", "models/templates",
     "microsoft-Phi-3.5-mini-instruct.jinja", "<s>", "<|endoftext|>", "phi3",
     "llama.cpp's phi3 formatter does not end the text with EOS when no generation prompt is "
     "asked for", {"tool": TOOL_NOT_COMPARED}),
    ("microsoft/Phi-3-small", "test-chat-template.cpp", "cpp:Phi-3-small", "<|endoftext|>",
     "<|endoftext|>", "phi3", "llama.cpp adds BOS through the tokenizer and no final EOS",
     {"tool": TOOL_NOT_COMPARED}),
    ("microsoft/phi-4", "test-chat-template.cpp", "cpp:phi-4", "<|endoftext|>", "<|im_end|>",
     "phi4", None, {"tool": TOOL_NOT_COMPARED}),
    ("Qwen/Qwen3-0.6B", "models/templates", "Qwen-Qwen3-0.6B.jinja", "<|endoftext|>",
     "<|im_end|>", "chatml", None,
     {"tool": "Qwen's template turns a tool result into a user turn wrapped in <tool_response>; "
              "troupe's ChatML keeps role 'tool' (SmolLM2's behaviour)"}),
    ("ibm-granite/granite-3.0-8b-instruct", "test-chat-template.cpp",
     "cpp:ibm-granite/granite-3.0-8b-instruct", "", "<|end_of_text|>", "granite", None,
     {"tool": "Granite 3.0's template drops a 'tool' turn; troupe prints it with its role"}),
    ("ibm-granite/granite-3.3-2b-instruct", "models/templates",
     "ibm-granite-granite-3.3-2B-Instruct.jinja", "", "<|end_of_text|>", "granite", None, {}),
    ("HuggingFaceTB/SmolLM3-3B", "models/templates", "HuggingFaceTB-SmolLM3-3B.jinja",
     "<|begin_of_text|>", "<|im_end|>", "smollm3", None, {}),
    ("google/gemma-2-2b-it", "models/templates", "google-gemma-2-2b-it.jinja", "<bos>", "<eos>",
     "gemma", "llama.cpp merges a system message into the first user turn where Jinja refuses it",
     {"tool": TOOL_NOT_COMPARED}),
    ("google/gemma-7b-it", "test-chat-template.cpp", "cpp:google/gemma-7b-it", "<bos>", "<eos>",
     "gemma", None, {"tool": TOOL_NOT_COMPARED}),
    ("eachadea/vicuna-13b-1.1", "test-chat-template.cpp", "cpp:eachadea/vicuna-13b-1.1", "<s>",
     "</s>", "vicuna", None, {"tool": TOOL_NOT_COMPARED}),
    ("Orca-Vicuna", "test-chat-template.cpp", "cpp:Orca-Vicuna", "<s>", "</s>", "vicuna_orca",
     None, {"tool": TOOL_NOT_COMPARED}),
]


def c_unescape(lit):
    """A C++ string literal's body as text (the escapes test-chat-template.cpp uses)."""
    out, i = [], 0
    while i < len(lit):
        ch = lit[i]
        if ch == "\\" and i + 1 < len(lit):
            nxt = lit[i + 1]
            out.append({"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}[nxt])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def cpp_templates(llama_cpp):
    """name -> template text of tests/test-chat-template.cpp's cases."""
    src = (llama_cpp / "tests" / "test-chat-template.cpp").read_text(encoding="utf-8")
    out = {}
    pat = re.compile(r'/\* \.name= \*/ "((?:[^"\\]|\\.)*)",\s*(?://[^\n]*\n\s*)*'
                     r'/\* \.template_str= \*/ (?:U8C\()?"((?:[^"\\]|\\.)*)"')
    for m in pat.finditer(src):
        out[c_unescape(m.group(1))] = c_unescape(m.group(2))
    return out


def make_renderer():
    try:
        from transformers.utils import chat_template_utils
        from transformers.utils.chat_template_utils import render_jinja_template

        class fixed_datetime(datetime.datetime):  # the strftime_now the template calls
            @classmethod
            def now(cls, tz=None):
                return FIXED_DATE
        chat_template_utils.datetime = fixed_datetime

        def render(template, messages, add_generation_prompt, **kw):
            kw.pop("strftime_now")
            out, _ = render_jinja_template(conversations=[messages], chat_template=template,
                                           add_generation_prompt=add_generation_prompt, **kw)
            return out[0]
        import transformers
        return render, f"transformers {transformers.__version__} render_jinja_template"
    except ImportError:
        pass
    import jinja2
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: FIXED_DATE.strftime(fmt)

    def render(template, messages, add_generation_prompt, **kw):
        return env.from_string(template).render(messages=messages,
                                                add_generation_prompt=add_generation_prompt, **kw)
    return render, (f"jinja2 {jinja2.__version__} with transformers' environment "
                    "(ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama-cpp", default="/tmp/llsrc/llama_cpp_python-0.3.36/vendor/llama.cpp")
    ap.add_argument("--out", default=str(pathlib.Path(__file__).resolve().parents[2] / "tests" /
                                         "fixtures" / "llama" / "chat_templates.json"))
    args = ap.parse_args()
    llama_cpp = pathlib.Path(args.llama_cpp)
    cpp = cpp_templates(llama_cpp)
    render, renderer = make_renderer()
    fixed = {"date_string": FIXED_DATE.strftime("%d %b %Y"),
             "strftime_now": lambda fmt: FIXED_DATE.strftime(fmt)}

    templates = []
    for name, source, text, bos, eos, kind, llama_cpp_note, not_compared in TEMPLATES:
        if text.startswith("cpp:"):
            keys = [k for k in cpp if k.startswith(text[4:])]
            assert len(keys) == 1, (text, keys)
            text = cpp[keys[0]]
            source = "llama.cpp tests/test-chat-template.cpp: " + keys[0]
        elif text.endswith(".jinja"):
            source = "llama.cpp models/templates/" + text
            text = (llama_cpp / "models" / "templates" / text).read_text(encoding="utf-8")
        renders, raises = [], []
        for conv in CONVERSATIONS:
            if conv["id"] in not_compared:
                continue
            for agp in (True, False):
                try:
                    out = render(text, conv["messages"], agp, bos_token=bos, eos_token=eos,
                                 **fixed)
                except Exception as e:  # raise_exception in the template
                    raises.append({"conversation": conv["id"], "add_generation_prompt": agp,
                                   "message": str(e)})
                    continue
                renders.append({"conversation": conv["id"], "add_generation_prompt": agp,
                                "text": out})
        entry = {"name": name, "source": source, "kind": kind.replace("_", "-"), "bos_token": bos,
                 "eos_token": eos, "template": text, "renders": renders}
        if raises:
            entry["jinja_raises"] = raises
        if not_compared:
            entry["not_compared"] = not_compared
        if llama_cpp_note:
            entry["llama_cpp_differs"] = llama_cpp_note
        templates.append(entry)

    doc = {"generator": "tools/reference/make_chat_template_fixture.py", "renderer": renderer,
           "date": FIXED_DATE.strftime("%Y-%m-%d"), "conversations": CONVERSATIONS,
           "templates": templates}
    out = pathlib.Path(args.out)
    out.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    n = sum(len(t["renders"]) for t in templates)
    print(f"{out}: {len(templates)} templates, {n} renderings, {out.stat().st_size} bytes "
          f"({renderer})")


if __name__ == "__main__":
    main()
