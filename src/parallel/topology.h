// Rank layout: which DP group, attention-TP slot, MLP/MoE slot and replica each rank has,
// computed from --tp-size / --dp-size / --enable-dp-attention / --ep-size and the MPI world.
#pragma once

#include <string>
#include <vector>

namespace dpserve {

// Flags and facts the layout depends on. Model fields are 0 when not known yet (e.g. before the
// config is read); their checks are then skipped and the head/expert split fields stay 0.
struct TopologyConfig {
  int tp_size = 1;
  int dp_size = 1;
  bool enable_dp_attention = false;
  int ep_size = 1;
  int world_size = 1;
  int rank = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int num_experts = 0;
};

// Everything is per rank except the counts. Two modes share one description:
//  * DP attention on: world = T ranks, one replica. The T ranks form D attention groups of
//    attn_tp_size = T/D ranks; MLP/MoE weights are split over all T ranks.
//  * DP attention off: world = D*T ranks, D independent replicas of T ranks; each replica is one
//    attention group (attn_tp_size = T) and its own MLP group.
// In both, attn_dp_rank = rank / attn_tp_size and attn_tp_rank = rank % attn_tp_size hold, and
// attn_dp_rank is the index of the group the router sends requests to.
struct Topology {
  int world_size = 1;
  int rank = 0;
  int tp_size = 1;
  int dp_size = 1;
  bool dp_attention = false;

  // Attention: the group this rank serves requests for, and its slot in it.
  int attn_tp_size = 1;
  int attn_tp_rank = 0;
  int attn_dp_rank = 0;
  bool is_group_leader = true;  // attn_tp_rank == 0: reports the group's outputs

  // Replicas: 1 with DP attention; D without it (rank 0 of each replica leads it).
  int num_replicas = 1;
  int replica = 0;

  // MLP / MoE: the T ranks of this rank's replica.
  int mlp_size = 1;
  int mlp_rank = 0;
  int groups_per_mlp = 1;  // attention groups whose tokens meet in one MLP group (D or 1)

  // MoE: experts split over ep_size ranks (whole experts), each expert's intermediate dimension
  // over moe_tp_size = mlp_size / ep_size ranks.
  int ep_size = 1;
  int ep_rank = 0;
  int moe_tp_size = 1;
  int moe_tp_rank = 0;
  int experts_per_rank = 0;  // 0 when num_experts is unknown
  int first_expert = 0;

  // Attention heads of this rank (0 when the head counts are unknown). When the model has fewer
  // KV heads than attention-TP ranks, each KV head is replicated on kv_replication ranks.
  int n_heads_local = 0;
  int first_head = 0;
  int n_kv_heads_local = 0;
  int first_kv_head = 0;
  int kv_replication = 1;

  // World ranks leading an attention group (attn_tp_rank == 0), in group order.
  std::vector<int> group_leaders() const;
  // World rank of slot `attn_tp_rank` in attention group `group` (of this replica).
  int world_rank_of(int group, int attn_tp_rank) const;
  std::string describe() const;
};

// Validates the flags against the world and the model and fills in the layout of cfg.rank.
// Throws dpserve::Error naming the flag to change when the combination is impossible.
Topology make_topology(const TopologyConfig& cfg);
// The checks of the layout flags alone (tp, dp, ep, DP attention), which need neither the MPI world
// nor the model: run before any rank starts, so a bad layout is one message, not one per rank.
void check_layout_flags(const TopologyConfig& cfg);

}  // namespace dpserve
