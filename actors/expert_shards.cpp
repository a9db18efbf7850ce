#include "troupe/deepseek/expert_shards.hpp"

#include <string>

#include "caf/all.hpp"
#include "troupe/caf_types.hpp"
#include "troupe/error.hpp"

namespace troupe::deepseek {

namespace {

struct shard_state {
  std::shared_ptr<const model> m;
  expert_scratch scratch;
  static inline const char* name = "troupe.expert_shard";
};

expert_shard_actor::behavior_type expert_shard(expert_shard_actor::stateful_pointer<shard_state> self,
                                               std::shared_ptr<const model> m) {
  self->state.m = std::move(m);
  return {
      [self](expert_step_atom, shard_work w) -> caf::result<bool> {
        try {
          compute_experts(*self->state.m, *w.batch, w.first, w.last, self->state.scratch);
          return true;
        } catch (const error& e) {
          return to_caf_error(e);
        } catch (const std::exception& e) {
          return to_caf_error(error(errc::internal, e.what()));
        }
      },
  };
}

}  // namespace

struct expert_shard_group::impl {
  explicit impl(caf::actor_system& sys) : self(sys) {}
  caf::scoped_actor self;
  std::vector<expert_shard_actor> shards;
};

expert_shard_group::expert_shard_group(caf::actor_system& sys, std::shared_ptr<const model> m, int shards) {
  const int64_t E = m->cfg().n_routed_experts;
  if (shards < 1 || shards > E)
    throw error(errc::invalid_argument, "expert_shard_group: " + std::to_string(shards) +
                                            " shards for " + std::to_string(E) +
                                            " routed experts; use 1 to " + std::to_string(E));
  impl_ = std::make_unique<impl>(sys);
  for (int i = 0; i < shards; ++i) {
    ranges_.emplace_back(E * i / shards, E * (i + 1) / shards);
    impl_->shards.push_back(sys.spawn<caf::detached>(expert_shard, m));
  }
}

expert_shard_group::~expert_shard_group() {
  for (auto& s : impl_->shards) impl_->self->send_exit(s, caf::exit_reason::user_shutdown);
}

void expert_shard_group::run(const expert_batch& batch) {
  using handle = decltype(impl_->self->request(impl_->shards[0], caf::infinite, expert_step_atom::value,
                                               shard_work{}));
  std::vector<handle> pending;
  pending.reserve(impl_->shards.size());
  for (size_t i = 0; i < impl_->shards.size(); ++i) {
    const auto [first, last] = ranges_[i];
    if (batch.offsets[static_cast<size_t>(last)] == batch.offsets[static_cast<size_t>(first)]) continue;
    pending.push_back(impl_->self->request(impl_->shards[i], caf::infinite, expert_step_atom::value,
                                           shard_work{&batch, first, last}));
  }
  std::string failure;
  for (auto& h : pending) {
    h.receive([&](bool) {},
              [&](caf::error& e) {
                if (failure.empty()) failure = from_caf_error(e, "expert shard").message();
              });
  }
  if (!failure.empty())
    throw error(errc::model_failed, "expert shard of layer " + std::to_string(batch.layer) + " failed: " +
                                        failure + "; the step's tokens were not computed");
}

}  // namespace troupe::deepseek
