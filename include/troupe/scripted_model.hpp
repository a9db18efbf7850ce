#pragma once
/// The scripted model: a deterministic model backend for tests, samples and benchmarks. It answers
/// each request with a turn chosen from a script by who is asking and how far the conversation is,
/// after a configurable latency.
///
/// Choosing a turn: the first rule whose `match` occurs in the conversation's system prompt or
/// first user message is used (an empty `match` matches everything); the turn is the k-th of the
/// rule, k being the number of assistant messages already in the conversation (a turn with
/// `repeat = n` counts n times). Past the end, the last turn repeats when it is a final answer;
/// otherwise the reply is the final answer "(script exhausted)".
///
/// Placeholders in text and tool-call arguments: {{prompt}} (the first user message),
/// {{tool_results}} (the results of the previous turn's tool calls, one per line), {{step}} (k).
/// In arguments the substituted text is JSON-escaped, so write "{{prompt}}" inside quotes.

#include <chrono>
#include <string>
#include <vector>

#include "caf/fwd.hpp"
#include "troupe/model.hpp"

namespace troupe {

struct scripted_turn {
  std::string text;
  std::string reasoning;
  std::vector<tool_call> tool_calls;  ///< Empty ids are filled in as "call_<k>_<index>".
  uint32_t repeat = 1;
};

struct script_rule {
  std::string match;
  std::vector<scripted_turn> turns;
};

struct model_script {
  std::vector<script_rule> rules;
  std::chrono::microseconds latency{0};  ///< Per turn, without blocking a thread.
};

/// Spawns a scripted model (protocol: troupe::model_actor).
model_actor spawn_scripted_model(caf::actor_system& sys, model_script script);

}  // namespace troupe
