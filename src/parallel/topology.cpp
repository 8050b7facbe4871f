#include "parallel/topology.h"

#include <fmt/format.h>

#include "core/check.h"

namespace dpserve {

namespace {

void validate_flags(const TopologyConfig& c) {
  check_layout_flags(c);
  if (c.world_size < 1 || c.rank < 0 || c.rank >= c.world_size)
    fail("rank {} is outside an MPI world of {} ranks", c.rank, c.world_size);

  if (c.enable_dp_attention) {
    if (c.world_size != c.tp_size)
      fail("the MPI world has {} ranks but --enable-dp-attention --tp-size {} needs exactly {}: "
           "launch with mpirun -np {} or change --tp-size",
           c.world_size, c.tp_size, c.tp_size, c.tp_size);
  } else if (c.world_size != c.tp_size * c.dp_size) {
    fail("the MPI world has {} ranks but --tp-size {} x --dp-size {} (DP attention off: {} replicas of "
         "{} ranks) needs {}: launch with mpirun -np {} or change --tp-size / --dp-size",
         c.world_size, c.tp_size, c.dp_size, c.dp_size, c.tp_size, c.tp_size * c.dp_size,
         c.tp_size * c.dp_size);
  }
}

void validate_model(const TopologyConfig& c, int attn_tp_size) {
  if (c.n_heads < 0 || c.n_kv_heads < 0 || c.num_experts < 0) fail("negative head or expert count in the model config");
  if (c.n_heads > 0) {
    const char* flags = c.enable_dp_attention ? "--tp-size / --dp-size" : "--tp-size";
    if (attn_tp_size > c.n_heads)
      fail("{} attention-TP ranks per group but the model has only {} attention heads: lower {} so "
           "that each group has at most {} ranks",
           attn_tp_size, c.n_heads, flags, c.n_heads);
    if (c.n_heads % attn_tp_size != 0)
      fail("the model's {} attention heads cannot be split evenly over {} attention-TP ranks per group; "
           "choose {} so that the ranks per group divide {}",
           c.n_heads, attn_tp_size, flags, c.n_heads);
  }
  if (c.n_kv_heads > 0) {
    if (c.n_heads > 0 && c.n_heads % c.n_kv_heads != 0)
      fail("model config: num_attention_heads {} is not a multiple of num_key_value_heads {}",
           c.n_heads, c.n_kv_heads);
    if (c.n_kv_heads >= attn_tp_size ? c.n_kv_heads % attn_tp_size != 0 : attn_tp_size % c.n_kv_heads != 0)
      fail("the model's {} KV heads can neither be split evenly over nor replicated evenly on {} "
           "attention-TP ranks per group; choose ranks per group (tp{}) dividing or divisible by {}",
           c.n_kv_heads, attn_tp_size, c.enable_dp_attention ? "/dp" : "", c.n_kv_heads);
  }
  if (c.num_experts > 0 && c.num_experts % c.ep_size != 0)
    fail("--ep-size {} does not divide the model's {} experts: choose an --ep-size that divides {}",
         c.ep_size, c.num_experts, c.num_experts);
  if (c.num_experts == 0 && c.ep_size > 1 && (c.n_heads > 0 || c.n_kv_heads > 0))
    fail("--ep-size {} given but the model has no experts: drop --ep-size", c.ep_size);
}

}  // namespace

void check_layout_flags(const TopologyConfig& c) {
  if (c.tp_size < 1) fail("--tp-size must be at least 1 (got {})", c.tp_size);
  if (c.dp_size < 1) fail("--dp-size must be at least 1 (got {})", c.dp_size);
  if (c.ep_size < 1) fail("--ep-size must be at least 1 (got {})", c.ep_size);
  if (c.enable_dp_attention && c.tp_size % c.dp_size != 0)
    fail("--tp-size {} is not divisible by --dp-size {}: with --enable-dp-attention each DP group "
         "gets tp/dp ranks; change --dp-size to a divisor of {} or --tp-size to a multiple of {}",
         c.tp_size, c.dp_size, c.tp_size, c.dp_size);
  if (c.tp_size % c.ep_size != 0)
    fail("--ep-size {} does not divide --tp-size {}: experts are split over ep ranks and each "
         "expert over tp/ep ranks; choose --ep-size among the divisors of {}",
         c.ep_size, c.tp_size, c.tp_size);
}

Topology make_topology(const TopologyConfig& c) {
  validate_flags(c);
  Topology t;
  t.world_size = c.world_size;
  t.rank = c.rank;
  t.tp_size = c.tp_size;
  t.dp_size = c.dp_size;
  t.dp_attention = c.enable_dp_attention;

  t.attn_tp_size = c.enable_dp_attention ? c.tp_size / c.dp_size : c.tp_size;
  t.attn_dp_rank = c.rank / t.attn_tp_size;
  t.attn_tp_rank = c.rank % t.attn_tp_size;
  t.is_group_leader = t.attn_tp_rank == 0;

  t.num_replicas = c.enable_dp_attention ? 1 : c.dp_size;
  t.replica = c.rank / c.tp_size;
  t.mlp_size = c.tp_size;
  t.mlp_rank = c.rank % c.tp_size;
  t.groups_per_mlp = t.mlp_size / t.attn_tp_size;

  validate_model(c, t.attn_tp_size);

  t.ep_size = c.ep_size;
  t.moe_tp_size = t.mlp_size / c.ep_size;
  t.ep_rank = t.mlp_rank / t.moe_tp_size;
  t.moe_tp_rank = t.mlp_rank % t.moe_tp_size;
  if (c.num_experts > 0) {
    t.experts_per_rank = c.num_experts / c.ep_size;
    t.first_expert = t.ep_rank * t.experts_per_rank;
  }

  if (c.n_heads > 0) {
    t.n_heads_local = c.n_heads / t.attn_tp_size;
    t.first_head = t.attn_tp_rank * t.n_heads_local;
  }
  if (c.n_kv_heads > 0) {
    if (c.n_kv_heads >= t.attn_tp_size) {
      t.n_kv_heads_local = c.n_kv_heads / t.attn_tp_size;
      t.first_kv_head = t.attn_tp_rank * t.n_kv_heads_local;
      t.kv_replication = 1;
    } else {
      // Consecutive ranks share a KV head, so a rank's query heads (consecutive too) all map to it.
      t.kv_replication = t.attn_tp_size / c.n_kv_heads;
      t.n_kv_heads_local = 1;
      t.first_kv_head = t.attn_tp_rank / t.kv_replication;
    }
  }
  return t;
}

std::vector<int> Topology::group_leaders() const {
  std::vector<int> out;
  for (int r = 0; r < world_size; r += attn_tp_size) out.push_back(r);
  return out;
}

int Topology::world_rank_of(int group, int slot) const {
  DP_CHECK(group >= 0 && group * attn_tp_size < world_size && slot >= 0 && slot < attn_tp_size,
           "group {} slot {}", group, slot);
  return group * attn_tp_size + slot;
}

std::string Topology::describe() const {
  return fmt::format(
      "rank {}/{}: {} tp={} dp={} | attn group {} slot {}/{}{} | replica {}/{} | mlp {}/{} | ep {}/{} "
      "moe_tp {}/{}",
      rank, world_size, dp_attention ? "dp-attention" : "replicas", tp_size, dp_size, attn_dp_rank,
      attn_tp_rank, attn_tp_size, is_group_leader ? " (leader)" : "", replica, num_replicas, mlp_rank,
      mlp_size, ep_rank, ep_size, moe_tp_rank, moe_tp_size);
}

}  // namespace dpserve
