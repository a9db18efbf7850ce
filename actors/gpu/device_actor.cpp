// The device actor: one GPU's experts, buffers and NCCL communicator (protocol:
// device_actors.hpp). UNVERIFIED on a GPU: compiled only (no device in CI); the host decisions it
// executes (placement, plan, alignment, buckets, budget, the deadline wait on NCCL exchanges) are
// tested in tests/gpu/test_gpu_host. The failure path (timeout, NCCL async error, ncclCommAbort)
// has never run against a dead peer.

#include <algorithm>
#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "caf/all.hpp"
#include "cpu/low_bit.hpp"
#include "cuda/int4_repack.hpp"
#include "cuda/moe_align.hpp"
#include "cuda_check.hpp"
#include "device_actors.hpp"
#include "troupe/caf_types.hpp"
#include "troupe/gpu/all_to_all_plan.hpp"
#include "troupe/gpu/completion_wait.hpp"
#include "troupe/gpu/device_memory.hpp"
#include "troupe/gpu/graph_buckets.hpp"

#ifdef TROUPE_HAVE_NCCL
#include <nccl.h>
static_assert(sizeof(ncclUniqueId) == sizeof(troupe::gpu::nccl_unique_id::bytes),
              "nccl_unique_id must hold exactly an ncclUniqueId");
#endif

namespace troupe::gpu {

namespace {

namespace kc = kernels::cuda;
using detail::check_cuda;
using detail::device_buffer;

#ifdef TROUPE_HAVE_NCCL
void check_nccl(ncclResult_t r, int device, const char* what, ncclComm_t comm = nullptr) {
  if (r != ncclSuccess) {
    std::string detail = ncclGetErrorString(r);
    if (const char* last = ncclGetLastError(comm); last != nullptr && *last != '\0')
      detail += std::string(" (") + last + ")";
    throw error(errc::model_failed, "gpu device " + std::to_string(device) + ": " + what + ": " + detail);
  }
}

// One ncclGroupStart/ncclGroupEnd bracket. A failing ncclSend/ncclRecv inside it throws; the
// destructor then still closes the group, so that this thread's next NCCL call does not land in a
// group that was never ended (NCCL groups nest per thread: one left open swallows every later
// call of the actor until the process exits).
class nccl_group {
 public:
  nccl_group(int device, const char* what) : device_(device), what_(what) {
    check_nccl(ncclGroupStart(), device_, "ncclGroupStart");
    open_ = true;
  }
  ~nccl_group() {
    if (open_) ncclGroupEnd();
  }
  nccl_group(const nccl_group&) = delete;
  nccl_group& operator=(const nccl_group&) = delete;
  void end(ncclComm_t comm) {
    open_ = false;
    check_nccl(ncclGroupEnd(), device_, what_, comm);
  }

 private:
  int device_;
  const char* what_;
  bool open_ = false;
};
#endif

// The repacked INT4 experts of one MoE layer held by this rank.
struct layer_experts {
  device_buffer gate_up_tiles, gate_up_scales;  // n = 2·inter, k = hidden
  device_buffer down_tiles, down_scales;        // n = hidden, k = inter
};

// Checks that w can feed the grouped GEMM and returns its packed view.
void require_int4(const deepseek::linear_weight& w) {
  if (w.fmt != deepseek::linear_weight::format::int4_group || w.group != 32 ||
      w.scale_type != static_cast<uint8_t>(kernels::cpu::scale_type::bf16))
    throw error(errc::unsupported,
                "gpu experts: " + w.name + " is not INT4 with group-32 bf16 scales; the GPU grouped "
                "GEMM (W4A16) computes only compressed-tensors pack-quantized experts (Kimi K2/K2.5)");
}

// Repacks experts [first, last) of one projection pair into tiles: rows of `a` then rows of `b`
// (b may be null) as one [n, k] matrix per expert.
void repack(const std::vector<const deepseek::linear_weight*>& a,
            const std::vector<const deepseek::linear_weight*>& b, int64_t n, int64_t k,
            std::vector<uint32_t>& tiles, std::vector<uint16_t>& scales) {
  const auto E = static_cast<int64_t>(a.size());
  tiles.assign(static_cast<size_t>(E * kc::int4_tile_words(n, k)), 0);
  scales.assign(static_cast<size_t>(E * kc::int4_tile_scales(n, k)), 0);
  std::vector<uint32_t> packed(static_cast<size_t>(n * (k / 8)));
  std::vector<uint16_t> sc(static_cast<size_t>(n * (k / 32)));
  for (int64_t e = 0; e < E; ++e) {
    int64_t row = 0;
    for (const auto* w : {a[static_cast<size_t>(e)], b.empty() ? nullptr : b[static_cast<size_t>(e)]}) {
      if (w == nullptr) continue;
      const auto* s = static_cast<const uint16_t*>(w->scales);
      for (int64_t r = 0; r < w->rows; ++r, ++row) {
        std::memcpy(packed.data() + row * (k / 8), w->packed + r * w->packed_stride,
                    static_cast<size_t>(k / 8) * sizeof(uint32_t));
        std::memcpy(sc.data() + row * (k / 32), s + r * w->scale_stride,
                    static_cast<size_t>(k / 32) * sizeof(uint16_t));
      }
    }
    const auto st = kc::int4_repack_expert(packed.data(), k / 8, sc.data(), k / 32, n, k, e,
                                           tiles.data(), scales.data());
    if (st != kc::status::ok)
      throw error(errc::internal, std::string("gpu experts: int4_repack_expert: ") + kc::to_string(st));
  }
}

struct device_state {
  std::shared_ptr<const deepseek::model> m;
  expert_placement placement{1, 1};
  int rank = 0;
  int ranks = 1;
  device_options opts;
  graph_buckets buckets{{1}};
  int64_t hidden = 0, inter = 0;
  cudaStream_t stream = nullptr;  // copies and NCCL
  stream_actor compute;
  std::vector<layer_experts> layers;  // [num_hidden_layers]; empty for dense layers
  device_buffer recv_x, gate_up, act, act_bf16, y, sorted, expert_ids, post_padded;
  device_buffer send_x, send_experts, recv_experts_dev, counts, back;  // several ranks only
  int64_t capacity = 0;
#ifdef TROUPE_HAVE_NCCL
  ncclComm_t comm = nullptr;  // null again once aborted
#endif
  cudaEvent_t exchanged = nullptr;  // several ranks only: recorded after each NCCL exchange
  // Non-empty once a step failed with several ranks: why. The communicator is aborted by then,
  // and every later message is refused with this reason.
  std::string broken;
  static inline const char* name = "troupe.gpu_device";

  ~device_state() {
    cudaSetDevice(opts.device);
#ifdef TROUPE_HAVE_NCCL
    // An aborted communicator is null here. ncclCommDestroy would wait for queued NCCL work, and
    // every failure that can leave some queued aborts first (fail_group).
    if (comm != nullptr) ncclCommDestroy(comm);
#endif
    if (exchanged != nullptr) cudaEventDestroy(exchanged);
    if (stream != nullptr) cudaStreamDestroy(stream);
  }

  std::string where() const {
    return "gpu device " + std::to_string(opts.device) + " (rank " + std::to_string(rank) + " of " +
           std::to_string(ranks) + ")";
  }

  // After a failure that leaves this rank's NCCL calls unpaired with its peers' (a step failed
  // or skipped in part): aborts the communicator, which also ends any of its kernels still
  // waiting on a peer, and refuses every later message with `reason`. Keeps the first reason.
  void fail_group(const std::string& reason) {
    if (ranks == 1 || !broken.empty()) return;
    broken = reason;
#ifdef TROUPE_HAVE_NCCL
    if (comm != nullptr) {
      ncclCommAbort(comm);
      comm = nullptr;
    }
#endif
  }

  // The error to reply for a step that failed: with several ranks, also breaks this actor and
  // says so (unless wait_exchange, which says it itself, already did).
  error fail_step(const error& e) {
    if (ranks == 1 || !broken.empty()) return e;
    error t(e.code(), e.message() + ". " + where() + " skips the rest of this step and aborts its "
                      "NCCL communicator: its peers time out after nccl_timeout (" +
                      std::to_string(opts.nccl_timeout.count()) + " ms) and the expert group "
                      "must be rebuilt, as every rank's communicator is gone");
    fail_group(t.message());
    return t;
  }

  // The answer to any message once broken; none otherwise.
  caf::error refusal() const {
    if (broken.empty()) return caf::none;
    return to_caf_error(error(errc::model_failed,
                              where() + " is out of service: an earlier step failed and its NCCL "
                              "communicator was aborted. First failure: " + broken));
  }

  void load(caf::actor_system& sys) {
    const int d = opts.device;
    const deepseek::config& c = m->cfg();
    hidden = c.hidden_size;
    inter = c.moe_intermediate_size;
    if (hidden % 32 != 0 || inter % 32 != 0)
      throw error(errc::unsupported, "gpu experts: hidden_size " + std::to_string(hidden) +
                                         " and moe_intermediate_size " + std::to_string(inter) +
                                         " must be multiples of 32 (INT4 group 32)");
    if (opts.nccl_timeout.count() < 0)
      throw error(errc::invalid_argument, "gpu experts: nccl_timeout " +
                                              std::to_string(opts.nccl_timeout.count()) +
                                              " ms is negative (0: no deadline)");
    if (opts.block != 16 && opts.block != 32 && opts.block != 64)  // before capacity / block
      throw error(errc::invalid_argument, "gpu experts: grouped GEMM block " + std::to_string(opts.block) +
                                              " (16, 32 or 64)");
    buckets = graph_buckets(opts.buckets);
    if (buckets.largest() > opts.max_rows || opts.max_rows < 1)
      throw error(errc::invalid_argument, "gpu experts: captured row counts up to " +
                                              std::to_string(buckets.largest()) + " but max_rows " +
                                              std::to_string(opts.max_rows));
    check_cuda(cudaSetDevice(d), d, "cudaSetDevice");
    // Budget: this rank's experts and step buffers (the rest of the model stays on the host here).
    const int64_t E = c.n_routed_experts, R = opts.max_rows;
    capacity = kc::moe_align_capacity(R, 1, E, opts.block);
    const int64_t buffers = R * (hidden * 2 + 2 * inter * 4 + inter * 4 + inter * 2 + hidden * 4) +
                            capacity * 4 + capacity / opts.block * 4 + 4 +
                            (ranks > 1 ? R * (hidden * 2 + 4 + 4 + hidden * 4) + 16 * ranks : 0);
    auto plan = plan_device_memory(c, placement, rank, 0, 1);
    plan.replicated_weight_bytes = 0;
    plan.workspace_bytes = buffers;
    size_t free_bytes = 0, total_bytes = 0;
    check_cuda(cudaMemGetInfo(&free_bytes, &total_bytes), d, "cudaMemGetInfo");
    check_fits(plan, static_cast<int64_t>(free_bytes), "the routed experts of " + m->path().string());
    // The step kernels put rows on grid.y (launch_silu_mul, launch_f32_to_bf16: at most 65535):
    // refused at load (after the budget, which names the sizes of a max_rows that could never
    // fit), not at the first step.
    if (opts.max_rows > 65535)
      throw error(errc::invalid_argument, "gpu experts: max_rows " + std::to_string(opts.max_rows) +
                                              " is above 65535, the most rows the step kernels launch");

    check_cuda(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), d, "cudaStreamCreate");
    if (ranks > 1)
      check_cuda(cudaEventCreateWithFlags(&exchanged, cudaEventDisableTiming), d,
                 "cudaEventCreate");
    layers.resize(static_cast<size_t>(c.num_hidden_layers));
    std::vector<uint32_t> tiles;
    std::vector<uint16_t> scales;
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      const auto& L = m->layer(l);
      if (!L.moe) continue;
      std::vector<const deepseek::linear_weight*> g, u, dn;
      for (int64_t e = placement.first(rank); e < placement.last(rank); ++e) {
        const auto& w = L.experts[static_cast<size_t>(e)];
        for (const auto* p : {&w.gate, &w.up, &w.down}) require_int4(*p);
        g.push_back(&w.gate);
        u.push_back(&w.up);
        dn.push_back(&w.down);
      }
      auto& le = layers[static_cast<size_t>(l)];
      auto upload = [&](device_buffer& dst, const void* src, size_t bytes, const char* what) {
        dst = device_buffer(d, bytes, what);
        check_cuda(cudaMemcpy(dst.as<void>(), src, bytes, cudaMemcpyHostToDevice), d, what);
      };
      repack(g, u, 2 * inter, hidden, tiles, scales);
      upload(le.gate_up_tiles, tiles.data(), tiles.size() * 4, "expert gate/up tiles");
      upload(le.gate_up_scales, scales.data(), scales.size() * 2, "expert gate/up scales");
      repack(dn, {}, hidden, inter, tiles, scales);
      upload(le.down_tiles, tiles.data(), tiles.size() * 4, "expert down tiles");
      upload(le.down_scales, scales.data(), scales.size() * 2, "expert down scales");
    }
    recv_x = device_buffer(d, static_cast<size_t>(R * hidden * 2), "received rows");
    gate_up = device_buffer(d, static_cast<size_t>(R * 2 * inter * 4), "gate/up output");
    act = device_buffer(d, static_cast<size_t>(R * inter * 4), "SiLU output");
    act_bf16 = device_buffer(d, static_cast<size_t>(R * inter * 2), "SiLU output (bf16)");
    y = device_buffer(d, static_cast<size_t>(R * hidden * 4), "expert output");
    sorted = device_buffer(d, static_cast<size_t>(capacity * 4), "sorted row ids");
    expert_ids = device_buffer(d, static_cast<size_t>(capacity / opts.block * 4), "block experts");
    post_padded = device_buffer(d, 4, "rows post padding");
    if (ranks > 1) {
      send_x = device_buffer(d, static_cast<size_t>(R * hidden * 2), "rows to send");
      send_experts = device_buffer(d, static_cast<size_t>(R * 4), "experts of the rows to send");
      recv_experts_dev = device_buffer(d, static_cast<size_t>(R * 4), "experts of the received rows");
      counts = device_buffer(d, static_cast<size_t>(2 * ranks * 8), "row counts");
      back = device_buffer(d, static_cast<size_t>(R * hidden * 4), "returned rows");
    }
    compute = spawn_stream_actor(sys, d);
  }

  // This step's exchange as seen from here: what each peer sends this rank.
  std::vector<int64_t> recv_counts;
  receive_layout recv;
  std::vector<int32_t> recv_experts;  // [recv.rows()] global expert of each received row

#ifdef TROUPE_HAVE_NCCL
  // Waits for everything queued on `stream` (one NCCL exchange and its copies) with the deadline
  // opts.nccl_timeout, instead of cudaStreamSynchronize, which blocks forever when a peer never
  // sends its half. On a timeout or an error: fail_group, then troupe::error(model_failed).
  // UNVERIFIED on a GPU (see the top of this file).
  void wait_exchange(const char* exchange, int64_t layer) {
    const int d = opts.device;
    check_cuda(cudaEventRecord(exchanged, stream), d, "cudaEventRecord (exchange)");
    completion_wait_options w;
    w.timeout = opts.nccl_timeout;
    const auto r = wait_for_completion(
        [this] {
          const cudaError_t e = cudaEventQuery(exchanged);
          if (e == cudaSuccess) return poll_result::done();
          if (e == cudaErrorNotReady) return poll_result::pending();
          return poll_result::failed(std::string("CUDA error ") + cudaGetErrorString(e));
        },
        [this]() -> std::optional<std::string> {
          ncclResult_t async = ncclSuccess;
          const ncclResult_t q = ncclCommGetAsyncError(comm, &async);
          if (q != ncclSuccess)
            return std::string("ncclCommGetAsyncError: ") + ncclGetErrorString(q);
          if (async == ncclSuccess || async == ncclInProgress) return std::nullopt;
          std::string m = std::string("NCCL async error: ") + ncclGetErrorString(async);
          if (const char* last = ncclGetLastError(comm); last != nullptr && *last != '\0')
            m += std::string(" (") + last + ")";
          return m;
        },
        w);
    if (r.done()) return;
    const std::string what =
        r.result == completion_wait_result::outcome::timed_out
            ? "timed out after " +
                  std::to_string(
                      std::chrono::duration_cast<std::chrono::milliseconds>(r.elapsed).count()) +
                  " ms (nccl_timeout " + std::to_string(opts.nccl_timeout.count()) +
                  " ms): a peer did not do its half"
            : "failed: " + r.message;
    const std::string msg =
        where() + ": the " + exchange + " exchange of layer " + std::to_string(layer) + " " + what +
        ". This rank's NCCL communicator is aborted; the expert group must be rebuilt, as every "
        "rank's communicator is gone (the peers time out or fail the same way). Check the other "
        "ranks' logs for the first failure: a rank that died, threw, or missed this step";
    fail_group(msg);
    throw error(errc::model_failed, msg);
  }
#endif

  // Moves the rows this rank computes onto its device: its own rows by H2D for one rank; for
  // several, the counts first (one int64 per peer each way), then rows and their experts by
  // ncclSend/ncclRecv along every rank's plan.
  void dispatch(const device_step& s) {
    const int d = opts.device;
    const auto row_bytes = static_cast<size_t>(hidden) * 2;
    if (ranks == 1) {
      if (s.rows > 0)
        check_cuda(cudaMemcpyAsync(recv_x.as<void>(), s.send_x, static_cast<size_t>(s.rows) * row_bytes,
                                   cudaMemcpyHostToDevice, stream), d, "rows to the device");
      recv_counts.assign(1, s.rows);
      recv = plan_receive(recv_counts);
      if (s.rows > 0) recv_experts.assign(s.send_experts, s.send_experts + s.rows);
      else recv_experts.clear();
      return;
    }
#ifdef TROUPE_HAVE_NCCL
    const auto n = static_cast<size_t>(ranks);
    if (s.rows > 0) {  // a rank without tokens passes no arrays
      check_cuda(cudaMemcpyAsync(send_x.as<void>(), s.send_x, static_cast<size_t>(s.rows) * row_bytes,
                                 cudaMemcpyHostToDevice, stream), d, "rows to send");
      check_cuda(cudaMemcpyAsync(send_experts.as<void>(), s.send_experts, static_cast<size_t>(s.rows) * 4,
                                 cudaMemcpyHostToDevice, stream), d, "experts of the rows to send");
    }
    check_cuda(cudaMemcpyAsync(counts.as<void>(), s.send_counts, n * 8, cudaMemcpyHostToDevice, stream), d,
               "send counts");
    auto* c = counts.as<int64_t>();
    {
      nccl_group group(d, "ncclGroupEnd (counts)");
      for (int p = 0; p < ranks; ++p) {
        check_nccl(ncclSend(c + p, 1, ncclInt64, p, comm, stream), d, "ncclSend (counts)", comm);
        check_nccl(ncclRecv(c + ranks + p, 1, ncclInt64, p, comm, stream), d, "ncclRecv (counts)", comm);
      }
      group.end(comm);
    }
    recv_counts.resize(n);
    check_cuda(cudaMemcpyAsync(recv_counts.data(), c + ranks, n * 8, cudaMemcpyDeviceToHost, stream), d,
               "receive counts");
    wait_exchange("counts", s.layer);
    recv = plan_receive(recv_counts);
    if (recv.rows() > opts.max_rows)
      throw error(errc::budget_exceeded,
                  where() + ": layer " + std::to_string(s.layer) + ": peers send " +
                      std::to_string(recv.rows()) + " expert rows, more than the " +
                      std::to_string(opts.max_rows) + " it was sized for (bound every rank's "
                      "batch so that rows · ranks <= max_rows)");
    {
      nccl_group group(d, "ncclGroupEnd (dispatch)");
      for (int p = 0; p < ranks; ++p) {
        const auto P = static_cast<size_t>(p);
        if (const int64_t k = s.send_counts[P]; k > 0) {
          check_nccl(ncclSend(send_x.as<uint16_t>() + s.send_offsets[P] * hidden, static_cast<size_t>(k * hidden),
                              ncclBfloat16, p, comm, stream), d, "ncclSend (dispatch rows)", comm);
          check_nccl(ncclSend(send_experts.as<int32_t>() + s.send_offsets[P], static_cast<size_t>(k), ncclInt32,
                              p, comm, stream), d, "ncclSend (dispatch experts)", comm);
        }
        if (const int64_t k = recv.counts[P]; k > 0) {
          check_nccl(ncclRecv(recv_x.as<uint16_t>() + recv.offsets[P] * hidden, static_cast<size_t>(k * hidden),
                              ncclBfloat16, p, comm, stream), d, "ncclRecv (dispatch rows)", comm);
          check_nccl(ncclRecv(recv_experts_dev.as<int32_t>() + recv.offsets[P], static_cast<size_t>(k), ncclInt32,
                              p, comm, stream), d, "ncclRecv (dispatch experts)", comm);
        }
      }
      group.end(comm);
    }
    recv_experts.resize(static_cast<size_t>(recv.rows()));
    if (!recv_experts.empty())
      check_cuda(cudaMemcpyAsync(recv_experts.data(), recv_experts_dev.as<void>(),
                                 recv_experts.size() * 4, cudaMemcpyDeviceToHost, stream), d,
                 "received experts");
    wait_exchange("dispatch", s.layer);
#endif
  }

  // Returns the computed rows to the ranks they came from, and this rank's own rows to the host
  // in its plan's order.
  void combine(const device_step& s) {
    const int d = opts.device;
    const auto row_bytes = static_cast<size_t>(hidden) * 4;
    if (ranks == 1) {
      if (s.rows > 0)
        check_cuda(cudaMemcpyAsync(s.back, y.as<void>(), static_cast<size_t>(s.rows) * row_bytes,
                                   cudaMemcpyDeviceToHost, stream), d, "rows to the host");
    } else {
#ifdef TROUPE_HAVE_NCCL
      {
        nccl_group group(d, "ncclGroupEnd (combine)");
        for (int p = 0; p < ranks; ++p) {
          const auto P = static_cast<size_t>(p);
          if (const int64_t k = recv.counts[P]; k > 0)
            check_nccl(ncclSend(y.as<float>() + recv.offsets[P] * hidden, static_cast<size_t>(k * hidden),
                                ncclFloat32, p, comm, stream), d, "ncclSend (combine)", comm);
          if (const int64_t k = s.send_counts[P]; k > 0)
            check_nccl(ncclRecv(back.as<float>() + s.send_offsets[P] * hidden, static_cast<size_t>(k * hidden),
                                ncclFloat32, p, comm, stream), d, "ncclRecv (combine)", comm);
        }
        group.end(comm);
      }
      if (s.rows > 0)
        check_cuda(cudaMemcpyAsync(s.back, back.as<void>(), static_cast<size_t>(s.rows) * row_bytes,
                                   cudaMemcpyDeviceToHost, stream), d, "rows to the host");
      wait_exchange("combine", s.layer);
      return;
#endif
    }
    check_cuda(cudaStreamSynchronize(stream), d, "combine (stream synchronisation)");
  }

  // Aligns the received rows on the host and uploads the block arrays; returns the FFN launch.
  expert_ffn prepare(const device_step& s) {
    const int d = opts.device;
    const int64_t rows = recv.rows();
    const int64_t E = placement.experts(), local = placement.last(rank) - placement.first(rank);
    auto blocks = align_received(placement, rank, recv_experts, opts.block);
    expert_ffn f;
    f.layer = s.layer;
    f.inter = inter;
    int64_t B = rows, cap = blocks.capacity;
    if (rows <= buckets.largest()) {
      // A captured size: padding rows point at row B (the GEMMs skip ids >= pairs = B).
      f.bucket_index = static_cast<int64_t>(buckets.index_for(rows));
      B = buckets.sizes()[static_cast<size_t>(f.bucket_index)];
      pad_to_bucket(blocks, rows, B, E);
      cap = blocks.capacity;
    }
    f.rows = B;
    const int32_t used = static_cast<int32_t>(blocks.rows_post_padded);
    check_cuda(cudaMemcpyAsync(sorted.as<void>(), blocks.sorted_rows.data(), static_cast<size_t>(cap) * 4,
                               cudaMemcpyHostToDevice, stream), d, "sorted row ids");
    check_cuda(cudaMemcpyAsync(expert_ids.as<void>(), blocks.expert_ids.data(),
                               static_cast<size_t>(cap / opts.block) * 4, cudaMemcpyHostToDevice, stream),
               d, "block experts");
    check_cuda(cudaMemcpyAsync(post_padded.as<void>(), &used, 4, cudaMemcpyHostToDevice, stream), d,
               "rows post padding");
    check_cuda(cudaStreamSynchronize(stream), d, "dispatch (stream synchronisation)");
    const auto& le = layers[static_cast<size_t>(s.layer)];
    auto common = [&](kc::moe_gemm_args& a) {
      a.experts = local;
      a.sorted_token_ids = sorted.as<int32_t>();
      a.expert_ids = expert_ids.as<int32_t>();
      a.num_tokens_post_padded = post_padded.as<int32_t>();
      a.capacity = cap;
      a.block = opts.block;
      a.pairs = B;
      a.a_div = 1;
    };
    common(f.gate_up);
    f.gate_up.a = recv_x.as<uint16_t>();
    f.gate_up.lda = hidden;
    f.gate_up.tiles = le.gate_up_tiles.as<uint32_t>();
    f.gate_up.scales = le.gate_up_scales.as<uint16_t>();
    f.gate_up.n = 2 * inter;
    f.gate_up.k = hidden;
    f.gate_up.y = gate_up.as<float>();
    f.gate_up.ldy = 2 * inter;
    common(f.down);
    f.down.a = act_bf16.as<uint16_t>();
    f.down.lda = inter;
    f.down.tiles = le.down_tiles.as<uint32_t>();
    f.down.scales = le.down_scales.as<uint16_t>();
    f.down.n = hidden;
    f.down.k = inter;
    f.down.y = y.as<float>();
    f.down.ldy = hidden;
    f.gate_up_out = gate_up.as<float>();
    f.act = act.as<float>();
    f.act_bf16 = act_bf16.as<uint16_t>();
    return f;
  }
};

device_actor::behavior_type device_behavior(device_actor::stateful_pointer<device_state> self,
                                            std::shared_ptr<const deepseek::model> m,
                                            expert_placement placement, int rank, device_options opts) {
  auto& st = self->state;
  st.m = std::move(m);
  st.placement = placement;
  st.rank = rank;
  st.ranks = placement.devices();
  st.opts = std::move(opts);
  return {
      [self](gpu_load_atom) -> caf::result<bool> {
        if (auto refused = self->state.refusal()) return refused;
        try {
          self->state.load(self->system());
          // The stream actor dies with its device actor (an unlinked one would keep
          // ~actor_system waiting).
          self->link_to(self->state.compute);
          return true;
        } catch (const error& e) {
          return to_caf_error(e);
        } catch (const std::exception& e) {
          return to_caf_error(error(errc::model_failed, std::string("gpu device: ") + e.what()));
        }
      },
      [self](nccl_id_atom) -> caf::result<nccl_unique_id> {
        if (auto refused = self->state.refusal()) return refused;
#ifdef TROUPE_HAVE_NCCL
        try {
          check_cuda(cudaSetDevice(self->state.opts.device), self->state.opts.device, "cudaSetDevice");
          ncclUniqueId raw;
          check_nccl(ncclGetUniqueId(&raw), self->state.opts.device, "ncclGetUniqueId");
          nccl_unique_id id;
          std::memcpy(id.bytes.data(), &raw, sizeof raw);
          return id;
        } catch (const error& e) {
          return to_caf_error(e);
        }
#else
        return to_caf_error(error(errc::unsupported, "gpu: troupe was built without NCCL"));
#endif
      },
      [self](nccl_init_atom, nccl_bootstrap_actor boot, nccl_unique_id id, int32_t rank,
             int32_t ranks) -> caf::result<bool> {
        if (auto refused = self->state.refusal()) return refused;
#ifdef TROUPE_HAVE_NCCL
        auto init = [self, rank, ranks](const nccl_unique_id& uid) -> caf::error {
          auto& st = self->state;
          try {
            check_cuda(cudaSetDevice(st.opts.device), st.opts.device, "cudaSetDevice");
            ncclUniqueId raw;
            std::memcpy(&raw, uid.bytes.data(), sizeof raw);
            // Blocking init (NCCL's default config): nccl.h (2.28) asks for no non-blocking
            // communicator for ncclCommGetAsyncError/ncclCommAbort, which wait_exchange calls
            // after ncclGroupEnd has returned. This call itself has no deadline.
            check_nccl(ncclCommInitRank(&st.comm, ranks, raw, rank), st.opts.device, "ncclCommInitRank");
            return caf::none;
          } catch (const error& e) {
            return to_caf_error(e);
          }
        };
        if (rank == 0) {
          if (auto err = init(id)) return err;
          return true;
        }
        auto rp = self->make_response_promise<bool>();
        self->request(boot, std::chrono::seconds(60), nccl_join_atom::value, rank, ranks)
            .then([rp, init](const nccl_unique_id& uid) mutable {
                    if (auto err = init(uid)) rp.deliver(std::move(err));
                    else rp.deliver(true);
                  },
                  [rp](caf::error& e) mutable { rp.deliver(std::move(e)); });
        return rp;
#else
        (void)boot, (void)id, (void)rank, (void)ranks;
        return to_caf_error(error(errc::unsupported, "gpu: troupe was built without NCCL; expert "
                                                     "parallelism over several GPUs needs it"));
#endif
      },
      [self](expert_step_atom, const device_step& s) -> caf::result<bool> {
        auto& st = self->state;
        if (auto refused = st.refusal()) return refused;
        // With several ranks, any failure of a step leaves the peers' NCCL calls unpaired (they
        // wait for this rank's half): fail_group aborts the communicator and breaks this actor.
        try {
          if (s.rows > st.opts.max_rows)
            throw error(errc::budget_exceeded,
                        "gpu device " + std::to_string(st.opts.device) + ": a step of " +
                            std::to_string(s.rows) + " expert rows, more than the " +
                            std::to_string(st.opts.max_rows) + " it was sized for; split the batch");
          check_cuda(cudaSetDevice(st.opts.device), st.opts.device, "cudaSetDevice");
          st.dispatch(s);
          if (st.recv.rows() == 0) {
            st.combine(s);
            return true;
          }
          const expert_ffn f = st.prepare(s);
          auto rp = self->make_response_promise<bool>();
          self->request(st.compute, std::chrono::seconds(120), gpu_ffn_atom::value, f)
              .then([self, rp, s](bool) mutable {
                      try {
                        self->state.combine(s);
                        rp.deliver(true);
                      } catch (const error& e) {
                        rp.deliver(to_caf_error(self->state.fail_step(e)));
                      }
                    },
                    [self, rp, s](caf::error& e) mutable {
                      // The FFN failed: this rank skips the combine its peers wait for.
                      const error t = from_caf_error(e, "expert FFN");
                      rp.deliver(to_caf_error(self->state.fail_step(
                          error(t.code(), self->state.where() + ": layer " +
                                              std::to_string(s.layer) + ": " + t.message()))));
                    });
          return rp;
        } catch (const error& e) {
          return to_caf_error(st.fail_step(e));
        }
      },
  };
}

}  // namespace

device_actor spawn_device_actor(caf::actor_system& sys, std::shared_ptr<const deepseek::model> m,
                                const expert_placement& placement, int rank, device_options opts) {
  return sys.spawn<caf::detached>(device_behavior, std::move(m), placement, rank, std::move(opts));
}

}  // namespace troupe::gpu
