#pragma once
/// Forward declarations of troupe's public types.

namespace troupe {

class error;
enum class errc : unsigned char;
struct tool_spec;
struct tool_call;
struct tool_result;
struct tool_options;
struct content_part;
struct chat_message;
struct usage;
struct sampling_params;
struct tool_choice;
struct turn_delta;
struct chat_request;
struct assistant_turn;
struct agent_config;
struct agent_env;
struct agent_result;
struct budgets;
struct run_report;
struct agent_report;
struct progress_event;
struct task_spec;
class swarm;

}  // namespace troupe
