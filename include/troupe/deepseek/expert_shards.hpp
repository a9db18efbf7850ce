#pragma once
/// The expert-shard actors of a DeepSeek-V3 model: the routed experts of every MoE layer are
/// partitioned across N actors (shard i owns experts [i·E/N, (i+1)·E/N) of every layer, so the
/// experts' weights are read by one shard only), and each decode step every shard computes its
/// experts for the whole batch in parallel with the others. The same structure carries over to
/// GPUs: a shard group per device, each shard owning the experts resident there.
///
/// Protocol of one shard (expert_shard_actor):
///   (expert_step_atom, shard_work) -> bool   computes experts [first, last) of work.batch's layer
///     over their tokens, writing only those experts' rows of batch.out; replies true, or the
///     troupe::error that stopped it (the group then throws). The batch is borrowed, not copied: the
///     sender keeps it alive and unchanged until the reply.
/// Shards are detached actors (a thread each), so they run in parallel with one another and with
/// the decoder; they stop when the group is destroyed.

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "caf/actor_system.hpp"
#include "caf/allowed_unsafe_message_type.hpp"
#include "caf/typed_actor.hpp"
#include "troupe/atoms.hpp"
#include "troupe/deepseek/experts.hpp"

namespace troupe::deepseek {

/// What one shard computes in one step: experts [first, last) of the borrowed batch.
struct shard_work {
  const expert_batch* batch = nullptr;
  int64_t first = 0;
  int64_t last = 0;
};

using expert_shard_actor = caf::typed_actor<caf::replies_to<expert_step_atom, shard_work>::with<bool>>;

/// The expert runner made of N shard actors.
class expert_shard_group final : public expert_runner {
 public:
  /// Spawns `shards` (>= 1, at most the model's routed expert count) shard actors in `sys`.
  /// Throws troupe::error(invalid_argument) for a count out of range.
  expert_shard_group(caf::actor_system& sys, std::shared_ptr<const model> m, int shards);
  ~expert_shard_group() override;
  expert_shard_group(const expert_shard_group&) = delete;
  expert_shard_group& operator=(const expert_shard_group&) = delete;

  /// Sends the batch to every shard that owns an expert with tokens, and blocks until all have
  /// replied. Throws troupe::error(model_failed) when a shard failed or died.
  void run(const expert_batch& batch) override;

  int shards() const noexcept { return static_cast<int>(ranges_.size()); }
  /// Experts [first, last) owned by shard i.
  std::pair<int64_t, int64_t> experts_of(int shard) const { return ranges_.at(static_cast<size_t>(shard)); }

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
  std::vector<std::pair<int64_t, int64_t>> ranges_;
};

}  // namespace troupe::deepseek

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::deepseek::shard_work)
