// How one forward runs a batch whose sequences each bring their own
// SubnetworkConfig. Per layer and half, the sequences that run that half are
// grouped by what they run (query heads for GQA attention, neurons for a
// SwiGLU FFN; a half run as a linear map, size 0, is one more kind) and
// each group runs as one call
// of the layer over just its tokens:
//
//   attention  the group's residual rows are gathered and normed, attention
//              runs over the group's sub-batch (its slots, cached lengths and
//              new tokens: a ragged batch of its own), and the output is
//              added back into those rows;
//   FFN        the routed path: ElasticMLP::add_to_rows reads the group's
//              normed rows by index and adds into the same residual rows.
//
// So every head count, MLP width and skip can differ between sequences of
// one batch; a sequence skipping a half is simply in no group. A group of
// every sequence is the plain dense call over the whole batch, so a batch
// with one configuration runs exactly as before. Groups of the same
// sequences share one row list and one sub-batch across layers, and build()
// reuses its storage, so a steady decode loop allocates nothing here.
#pragma once

#include <algorithm>
#include <cstddef>
#include <span>
#include <vector>

#include "elastic/core/attention_batch.hpp"
#include "elastic/core/error.hpp"
#include "elastic/io/model_description.hpp"
#include "elastic/model/subnetwork_config.hpp"

namespace elastic::model {

// Some sequences of a batch: which ones, their packed token rows, and the
// attention sub-batch they form. `whole` when it is every sequence (the
// batch itself, rows 0..tokens-1).
struct SequenceSet {
  std::vector<char> member;  // per sequence of the batch
  bool whole = false;
  std::vector<int> rows;     // packed token rows, ascending (empty when whole)
  std::vector<int> slots, cached, fresh, positions;
  std::size_t rows_offset = 0;  // of its row list in the schedule's index array

  index_t tokens() const { return static_cast<index_t>(rows.size()); }
  AttentionBatch batch() const { return {slots, cached, fresh, positions}; }
};

// One call of one half: what it runs (heads or MLP width; 0 for a linear
// map, stored in place of the block or beside it) over which set.
struct HalfGroup {
  std::int64_t size = 0;
  std::size_t set = 0;
};

struct LayerGroups {
  std::vector<HalfGroup> attention;
  std::vector<HalfGroup> ffn;
};

class BatchSchedule {
 public:
  // Groups `batch`'s sequences layer by layer: configs holds one config for
  // every sequence, or one for all, each with one choice per layer of
  // `model`; `batch` must be validated (AttentionBatch::validate). The row
  // lists of partial sets are laid out after `base_offset` entries of the
  // caller's index array (append_row_indices() gives them in order).
  void build(const io::ModelDescription& model, std::span<const SubnetworkConfig> configs,
             const AttentionBatch& batch, std::size_t base_offset) {
    const std::size_t sequences = batch.sequences();
    require(configs.size() == 1 || configs.size() == sequences, "Decoder: expected one SubnetworkConfig for the ",
            "whole batch or one per sequence (", sequences, "), found ", configs.size());
    for (const SubnetworkConfig& config : configs)
      require(config.layers.size() == model.layers.size(), "SubnetworkConfig: expected one choice per layer (",
              model.layers.size(), "), found ", config.layers.size());
    batch_ = batch;
    set_count_ = 0;
    index_count_ = 0;
    base_offset_ = base_offset;
    layers_.resize(model.layers.size());
    for (std::size_t i = 0; i < model.layers.size(); ++i) {
      const io::LayerPlan& plan = model.layers[i];
      LayerGroups& groups = layers_[i];
      groups.attention.clear();
      groups.ffn.clear();
      if (plan.attention != io::AttentionKind::none)
        group_half(configs, groups.attention, [&](const LayerChoice& c) { return c.skip_attention; },
                   [&](const LayerChoice& c) { return c.linear_attention ? 0 : std::int64_t{c.heads}; }, i);
      if (plan.ffn != io::FfnKind::none)
        group_half(configs, groups.ffn, [&](const LayerChoice& c) { return c.skip_ffn; },
                   [&](const LayerChoice& c) { return c.linear_ffn ? 0 : c.mlp_width; }, i);
    }
  }

  const LayerGroups& layer(std::size_t index) const { return layers_.at(index); }
  const SequenceSet& set(std::size_t index) const { return sets_.at(index); }

  // The row lists of the partial sets, in offset order, for the caller to
  // stage after its own `base_offset` indices (a whole set uses the
  // caller's identity rows instead).
  std::size_t index_count() const { return index_count_; }
  template <class Out>
  void append_row_indices(Out& out) const {
    for (std::size_t s = 0; s < set_count_; ++s)
      if (!sets_[s].whole) out.insert(out.end(), sets_[s].rows.begin(), sets_[s].rows.end());
  }

 private:
  template <class Skip, class Size>
  void group_half(std::span<const SubnetworkConfig> configs, std::vector<HalfGroup>& groups, Skip skip, Size size,
                  std::size_t layer) {
    const std::size_t sequences = batch_.sequences();
    const auto choice = [&](std::size_t s) -> const LayerChoice& {
      return configs[configs.size() == 1 ? 0 : s].layers[layer];
    };
    member_.assign(sequences, 0);
    for (std::size_t s = 0; s < sequences; ++s) {
      if (member_[s] != 0 || skip(choice(s))) continue;
      const std::int64_t value = size(choice(s));
      scratch_member_.assign(sequences, 0);
      for (std::size_t other = s; other < sequences; ++other)
        if (member_[other] == 0 && !skip(choice(other)) && size(choice(other)) == value) {
          scratch_member_[other] = 1;
          member_[other] = 1;
        }
      groups.push_back({value, find_or_add_set(scratch_member_)});
    }
  }

  std::size_t find_or_add_set(const std::vector<char>& member) {
    for (std::size_t s = 0; s < set_count_; ++s)
      if (sets_[s].member == member) return s;
    if (set_count_ == sets_.size()) sets_.emplace_back();
    SequenceSet& set = sets_[set_count_];
    set.member = member;
    set.whole = std::all_of(member.begin(), member.end(), [](char m) { return m != 0; });
    set.rows.clear();
    set.slots.clear();
    set.cached.clear();
    set.fresh.clear();
    set.positions.clear();
    if (!set.whole) {
      int first = 0;
      for (std::size_t s = 0; s < member.size(); ++s) {
        const int length = batch_.new_lengths[s];
        if (member[s] != 0) {
          set.slots.push_back(batch_.cache_slots[s]);
          set.cached.push_back(batch_.cached_lengths[s]);
          set.fresh.push_back(length);
          for (int j = 0; j < length; ++j) {
            set.rows.push_back(first + j);
            if (!batch_.positions.empty()) set.positions.push_back(batch_.positions[static_cast<std::size_t>(first + j)]);
          }
        }
        first += length;
      }
      set.rows_offset = base_offset_ + index_count_;
      index_count_ += set.rows.size();
    }
    return set_count_++;
  }

  AttentionBatch batch_;
  std::vector<LayerGroups> layers_;
  std::vector<SequenceSet> sets_;  // the first set_count_ are this build's
  std::size_t set_count_ = 0;
  std::size_t index_count_ = 0;
  std::size_t base_offset_ = 0;
  std::vector<char> member_, scratch_member_;
};

}  // namespace elastic::model
