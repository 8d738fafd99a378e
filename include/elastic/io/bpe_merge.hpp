// The merge loop both tokenizer models share. A word starts as a row of
// symbols (byte-level BPE: one per byte; SentencePiece: one per character),
// each a contiguous span of the word with a token id (or none). The loop
// repeatedly merges the adjacent pair that the model ranks best (lowest
// priority value; ties go to the leftmost pair) until no pair can merge.
// Candidates sit in a priority queue and are checked for staleness when
// popped, so a word of n symbols costs O(n log n).
#pragma once

#include <cstddef>
#include <optional>
#include <queue>
#include <vector>

namespace elastic::io {

struct MergeSymbol {
  std::size_t begin = 0;  // byte offset in the word
  std::size_t size = 0;
  int id = -1;            // -1: no token spells this symbol (yet)
};

struct MergeChoice {
  double priority = 0;  // lower merges first
  int merged_id = -1;
};

// `choose(left, right)` returns the merge of two adjacent symbols, or nullopt
// when they do not merge. Returns the surviving symbols in order.
template <class Choose>
std::vector<MergeSymbol> merge_symbols(const std::vector<MergeSymbol>& initial, const Choose& choose) {
  struct Node {
    MergeSymbol symbol;
    int previous;
    int next;
  };
  struct Candidate {
    double priority;
    int left;
    int left_id;
    int right_id;
    int merged_id;
    bool operator>(const Candidate& other) const {
      return priority != other.priority ? priority > other.priority : left > other.left;
    }
  };
  std::vector<Node> nodes;
  nodes.reserve(initial.size());
  for (std::size_t i = 0; i < initial.size(); ++i)
    nodes.push_back({initial[i], static_cast<int>(i) - 1, i + 1 < initial.size() ? static_cast<int>(i) + 1 : -1});

  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  const auto consider = [&](int left) {
    if (left < 0 || nodes[left].next < 0) return;
    const Node& right = nodes[nodes[left].next];
    if (const std::optional<MergeChoice> choice = choose(nodes[left].symbol, right.symbol))
      queue.push({choice->priority, left, nodes[left].symbol.id, right.symbol.id, choice->merged_id});
  };
  for (std::size_t i = 0; i + 1 < nodes.size(); ++i) consider(static_cast<int>(i));

  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Node& left = nodes[top.left];
    if (left.symbol.size == 0 || left.next < 0) continue;  // left was merged away, or has no right neighbour
    Node& right = nodes[left.next];
    if (left.symbol.id != top.left_id || right.symbol.id != top.right_id) continue;  // stale
    left.symbol.size += right.symbol.size;
    left.symbol.id = top.merged_id;
    right.symbol.size = 0;
    left.next = right.next;
    if (right.next >= 0) nodes[right.next].previous = top.left;
    consider(left.previous);
    consider(top.left);
  }

  std::vector<MergeSymbol> merged;
  for (int i = nodes.empty() ? -1 : 0; i >= 0; i = nodes[i].next) merged.push_back(nodes[i].symbol);
  return merged;
}

}  // namespace elastic::io
