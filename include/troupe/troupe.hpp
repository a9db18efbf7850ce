#pragma once
/// Everything a troupe program usually needs, in one include.

#include "troupe/agent.hpp"
#include "troupe/budget.hpp"
#include "troupe/builtin_tools.hpp"
#include "troupe/caf_types.hpp"
#include "troupe/error.hpp"
#include "troupe/json.hpp"
#include "troupe/message.hpp"
#include "troupe/model.hpp"
#include "troupe/plugin_loader.hpp"
#include "troupe/custom_agent.hpp"
#include "troupe/scripted_model.hpp"
#include "troupe/swarm.hpp"
#include "troupe/task_file.hpp"
#include "troupe/tool.hpp"
#include "troupe/tool_call.hpp"
#include "troupe/tool_registry.hpp"
