// gpu_expert_group: the device actors of N GPUs behind the expert_runner interface (contract:
// include/troupe/gpu/gpu_experts.hpp). UNVERIFIED on a GPU: compiled only (no device in CI).

#include "troupe/gpu/gpu_experts.hpp"

#include <cuda_runtime_api.h>

#include <chrono>
#include <string>

#include "caf/all.hpp"
#include "cpu/quant.hpp"
#include "device_actors.hpp"
#include "troupe/caf_types.hpp"
#include "troupe/gpu/all_to_all_plan.hpp"

namespace troupe::gpu {

struct gpu_expert_group::impl {
  impl(caf::actor_system& sys, const expert_placement& p) : self(sys), placement(p) {}
  caf::scoped_actor self;
  expert_placement placement;
  int64_t max_rows = 0;
  int first_rank = 0;
  // How long run() waits for a device's step: longer than a device's own deadlines (three NCCL
  // exchanges and the FFN), so that a failing device's precise reason arrives before this
  // generic timeout.
  std::chrono::milliseconds step_timeout{std::chrono::seconds(120)};
  // Several ranks: non-empty once a step failed (the devices that failed aborted their NCCL
  // communicators, so no later step can pair up): why.
  std::string broken;
  std::vector<device_actor> devices;
  std::vector<uint16_t> x_bf16, send;
  std::vector<float> back;

  // Sends one request per device at once and waits for all; throws the first failure.
  template <class... Ts>
  void all(std::chrono::seconds timeout, const std::string& what, const Ts&... xs) {
    using handle = decltype(self->request(devices[0], timeout, xs...));
    std::vector<handle> pending;
    for (auto& d : devices) pending.push_back(self->request(d, timeout, xs...));
    wait(pending, what);
  }
  template <class Handles>
  void wait(Handles& pending, const std::string& what) {
    std::string failure;
    errc code = errc::model_failed;
    for (auto& h : pending)
      h.receive([](bool) {},
                [&](caf::error& e) {
                  if (!failure.empty()) return;
                  const error t = from_caf_error(e, what);
                  failure = t.message();
                  code = t.code();
                });
    if (!failure.empty()) throw error(code, what + ": " + failure);
  }
};

int gpu_expert_group::visible_devices() noexcept {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

gpu_expert_group::gpu_expert_group(caf::actor_system& sys, std::shared_ptr<const deepseek::model> m,
                                   options opts) {
  const int visible = visible_devices();
  if (visible == 0) throw error(errc::unsupported, "gpu experts: no CUDA device is visible");
  const int n = opts.devices == 0 ? visible : opts.devices;
  if (n < 1 || n > visible)
    throw error(errc::invalid_argument, "gpu experts: " + std::to_string(n) + " devices asked for, " +
                                            std::to_string(visible) + " visible");
  const int world = opts.world == 0 ? n : opts.world;
  if (opts.first_rank < 0 || opts.first_rank + n > world)
    throw error(errc::invalid_argument, "gpu experts: ranks " + std::to_string(opts.first_rank) + " to " +
                                            std::to_string(opts.first_rank + n - 1) + " of a world of " +
                                            std::to_string(world));
  if (opts.first_rank > 0 && !opts.bootstrap)
    throw error(errc::invalid_argument, "gpu experts: a process with first_rank " +
                                            std::to_string(opts.first_rank) +
                                            " needs rank 0's bootstrap actor (options::bootstrap)");
#ifndef TROUPE_HAVE_NCCL
  if (world > 1)
    throw error(errc::unsupported, "gpu experts: troupe was built without NCCL; expert parallelism "
                                   "over " + std::to_string(world) + " GPUs needs it (use one device)");
#endif
  impl_ = std::make_unique<impl>(sys, expert_placement(m->cfg().n_routed_experts, world));
  impl_->max_rows = opts.max_rows;
  impl_->first_rank = opts.first_rank;
  if (opts.nccl_timeout.count() > 0) impl_->step_timeout += 3 * opts.nccl_timeout;
  for (int d = 0; d < n; ++d) {
    device_options o;
    o.device = d;
    o.max_rows = opts.max_rows;
    o.buckets = opts.buckets;
    o.block = opts.block;
    o.nccl_timeout = opts.nccl_timeout;
    impl_->devices.push_back(spawn_device_actor(sys, m, impl_->placement, opts.first_rank + d, o));
  }
  nccl_bootstrap_actor own_boot;
  try {
    impl_->all(std::chrono::seconds(600), "gpu experts: loading", gpu_load_atom::value);
    if (world > 1) {
      // The communicator: rank 0 makes the id, the bootstrap actor hands it to the other ranks.
      nccl_unique_id id;
      nccl_bootstrap_actor boot = opts.bootstrap;
      if (opts.first_rank == 0) {
        std::string failure;
        impl_->self->request(impl_->devices[0], std::chrono::seconds(60), nccl_id_atom::value)
            .receive([&](const nccl_unique_id& got) { id = got; },
                     [&](caf::error& e) { failure = from_caf_error(e, "ncclGetUniqueId").message(); });
        if (!failure.empty()) throw error(errc::model_failed, "gpu experts: " + failure);
        boot = own_boot = spawn_nccl_bootstrap(sys, id, world);
        if (opts.on_bootstrap) opts.on_bootstrap(boot);
      }
      using handle = decltype(impl_->self->request(impl_->devices[0], std::chrono::seconds(1),
                                                   nccl_init_atom::value, boot, id, int32_t{0},
                                                   int32_t{0}));
      std::vector<handle> pending;
      for (int d = 0; d < n; ++d)
        pending.push_back(impl_->self->request(impl_->devices[static_cast<size_t>(d)],
                                               std::chrono::seconds(600), nccl_init_atom::value, boot,
                                               id, int32_t{opts.first_rank + d}, int32_t{world}));
      impl_->wait(pending, "gpu experts: NCCL communicator");
      if (own_boot) impl_->self->send_exit(own_boot, caf::exit_reason::user_shutdown);
    }
  } catch (...) {
    if (own_boot) impl_->self->send_exit(own_boot, caf::exit_reason::user_shutdown);
    for (auto& d : impl_->devices) impl_->self->send_exit(d, caf::exit_reason::user_shutdown);
    throw;
  }
}

gpu_expert_group::~gpu_expert_group() {
  for (auto& d : impl_->devices) impl_->self->send_exit(d, caf::exit_reason::user_shutdown);
}

int gpu_expert_group::devices() const noexcept { return impl_->placement.devices(); }
const expert_placement& gpu_expert_group::placement() const noexcept { return impl_->placement; }

void gpu_expert_group::run(const deepseek::expert_batch& b) {
  auto& s = *impl_;
  if (!s.broken.empty())
    throw error(errc::model_failed,
                "gpu experts: layer " + std::to_string(b.layer) + " refused: this expert group "
                "is out of service since an earlier step failed and aborted its NCCL "
                "communicators; rebuild the group in every process. First failure: " + s.broken);
  // The batch enters at this process's first rank; its other ranks bring no rows of their own.
  const int first = s.first_rank;
  std::vector<dispatch_plan> plans;
  plans.push_back(plan_dispatch(s.placement, first, b.ids, b.tokens, b.top_k));
  for (size_t d = 1; d < s.devices.size(); ++d)
    plans.push_back(plan_dispatch(s.placement, first + static_cast<int>(d), {}, 0, b.top_k));
  const auto& plan = plans[0];
  if (plan.rows() > s.max_rows)
    throw error(errc::budget_exceeded, "gpu experts: layer " + std::to_string(b.layer) + " has " +
                                           std::to_string(plan.rows()) + " (token, slot) rows, more "
                                           "than max_rows " + std::to_string(s.max_rows) +
                                           "; split the batch or raise max_rows");
  s.x_bf16.resize(static_cast<size_t>(b.tokens * b.hidden));
  for (size_t i = 0; i < s.x_bf16.size(); ++i) s.x_bf16[i] = kernels::cpu::fp32_to_bf16(b.x[i]);
  s.send.resize(static_cast<size_t>(plan.rows() * b.hidden));
  pack_dispatch(plan, s.x_bf16.data(), static_cast<size_t>(b.hidden) * 2, s.send.data());
  s.back.resize(static_cast<size_t>(plan.rows() * b.hidden));
  using handle = decltype(s.self->request(s.devices[0], std::chrono::seconds(1), expert_step_atom::value,
                                          device_step{}));
  std::vector<handle> pending;
  for (size_t d = 0; d < s.devices.size(); ++d) {
    const auto& p = plans[d];
    device_step st;
    st.layer = b.layer;
    st.rows = p.rows();
    st.send_x = d == 0 ? s.send.data() : nullptr;
    st.send_experts = p.send_experts.data();
    st.send_counts = p.send_counts.data();
    st.send_offsets = p.send_offsets.data();
    st.back = d == 0 ? s.back.data() : nullptr;
    pending.push_back(s.self->request(s.devices[d], s.step_timeout, expert_step_atom::value, st));
  }
  try {
    s.wait(pending, "gpu experts: layer " + std::to_string(b.layer));
  } catch (const error& e) {
    if (s.placement.devices() > 1) s.broken = e.message();
    throw;
  }
  unpack_combine(plan, s.back.data(), static_cast<size_t>(b.hidden) * 4, b.out);
}

}  // namespace troupe::gpu
