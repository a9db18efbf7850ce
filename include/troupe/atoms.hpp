#pragma once
/// The message tags (CAF 0.17 atoms) of troupe's actor protocols. At most 10 characters of
/// [0-9A-Za-z_] each: other characters silently collide in CAF 0.17.

#include "caf/atom.hpp"

namespace troupe {

using chat_atom = caf::atom_constant<caf::atom("chat")>;
using delta_atom = caf::atom_constant<caf::atom("delta")>;
using cancel_atom = caf::atom_constant<caf::atom("cancel")>;
using invoke_atom = caf::atom_constant<caf::atom("invoke")>;
using register_atom = caf::atom_constant<caf::atom("register")>;
using unregister_atom = caf::atom_constant<caf::atom("unregister")>;
using list_atom = caf::atom_constant<caf::atom("list")>;
using run_atom = caf::atom_constant<caf::atom("run")>;
using resume_atom = caf::atom_constant<caf::atom("resume")>;
using tick_atom = caf::atom_constant<caf::atom("tick")>;
/// One MoE layer's batch for an expert shard (deepseek/expert_shards.hpp).
using expert_step_atom = caf::atom_constant<caf::atom("expstep")>;

}  // namespace troupe
