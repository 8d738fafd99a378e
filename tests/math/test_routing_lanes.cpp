// The per-thread and per-lane device functions of the CUDA routing kernels,
// driven by host loops: the one-block counting sort of plan_routes
// (math/counting_sort.hpp) run thread by thread with a sequential scan in
// place of the block scan must give the host executor's plan for any thread
// count; the row loops (math/row_ops.hpp) run lane by lane must give the host
// executor's gather, scatter-add, ReLU, RMSNorm and contribution sums and
// every element's to_float when widening, and leave everything past the row
// untouched.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "elastic/math/counting_sort.hpp"
#include "elastic/math/row_ops.hpp"
#include "support/route_plan_checks.hpp"
#include "support/test_support.hpp"

using namespace elastic;

namespace {

constexpr int kMaxChoices = 16;  // cuda::plan_block_max_choices

struct HostPlan {
  HostPlan(int tokens, int choices)
      : memory(RoutePlan::bytes_required(tokens, choices)), plan(RoutePlan::carve(memory.get(), tokens, choices)) {}
  host::WorkspaceBuffer memory;
  RoutePlan plan;
};

// The one-block kernel's three steps for every thread in turn; returns the
// first invalid token, or -1 with `plan` written.
int counting_sort(const RoutePlan& plan, const std::vector<int>& choices, int threads) {
  std::vector<int> table(static_cast<std::size_t>(math::counting_table_slots(threads, kMaxChoices)), -99);
  int first_bad = -1;
  for (int thread = 0; thread < threads; ++thread) {
    const int bad = math::count_run(table.data(), choices.data(), math::token_run(plan.tokens, threads, thread),
                                    thread, threads, plan.choices);
    if (bad >= 0 && first_bad < 0) first_bad = bad;
  }
  if (first_bad >= 0) return first_bad;
  const int entries = plan.choices * threads;
  int running = 0;
  for (int thread = 0; thread < threads; ++thread) {  // the block scan, sequentially
    int items[kMaxChoices];
    math::load_scan_items(items, table.data(), thread, entries);
    for (int& item : items) {
      const int count = item;
      item = running;
      running += count;
    }
    math::store_scan_items(table.data(), items, thread, entries);
  }
  for (int c = 0; c <= plan.choices; ++c) math::write_plan_group(plan, table.data(), c, threads);
  for (int thread = 0; thread < threads; ++thread)
    math::place_run(plan.permutation, table.data(), choices.data(), math::token_run(plan.tokens, threads, thread),
                    thread, threads);
  return -1;
}

}  // namespace

TEST_CASE("token runs cover the tokens in order, one run per thread") {
  for (int tokens : {0, 1, 7, 512, 513, 4096})
    for (int threads : {1, 32, 512}) {
      int next = 0;
      for (int thread = 0; thread < threads; ++thread) {
        const math::TokenRun run = math::token_run(tokens, threads, thread);
        CHECK(run.first == next);
        CHECK(run.last >= run.first);
        next = run.last;
      }
      CHECK(next == tokens);
    }
}

TEST_CASE("counting-table slots are conflict-free for a warp's column and scan accesses") {
  for (int lane_group = 0; lane_group < 4; ++lane_group)
    for (int i = 0; i < kMaxChoices; ++i) {
      std::vector<bool> bank(32, false);
      for (int lane = 0; lane < 32; ++lane) {  // the scan: thread t reads entries t * kMaxChoices + i
        const int slot = math::counting_slot((lane_group * 32 + lane) * kMaxChoices + i);
        CHECK(!bank[static_cast<std::size_t>(slot % 32)]);
        bank[static_cast<std::size_t>(slot % 32)] = true;
      }
    }
  for (int c = 0; c < kMaxChoices; ++c) {
    std::vector<bool> bank(32, false);
    for (int lane = 0; lane < 32; ++lane) {  // steps 1 and 3: one choice, consecutive threads
      const int slot = math::counting_slot(math::counting_entry(c, 64 + lane, 512));
      CHECK(!bank[static_cast<std::size_t>(slot % 32)]);
      bank[static_cast<std::size_t>(slot % 32)] = true;
    }
  }
}

TEST_CASE("the one-block counting sort gives the host executor's plan") {
  host::Executor executor(2);
  std::mt19937 engine(5);
  for (int tokens : {0, 1, 3, 67, 1000, 4096})
    for (int choices = 1; choices <= kMaxChoices; choices += 3)
      for (int threads : {1, 32, 512}) {
        CAPTURE(tokens);
        CAPTURE(choices);
        CAPTURE(threads);
        std::uniform_int_distribution<int> pick(0, choices - 1);
        std::vector<int> picks(static_cast<std::size_t>(tokens));
        for (int& choice : picks) choice = tokens % 2 == 0 ? pick(engine) : choices - 1;
        HostPlan expected(tokens, choices), got(tokens, choices);
        executor.plan_routes(expected.plan, picks.data());
        REQUIRE(counting_sort(got.plan, picks, threads) == -1);
        CHECK(test::route_plan_violation(got.plan, picks) == "");
        CHECK(std::equal(got.plan.permutation, got.plan.permutation + tokens, expected.plan.permutation));
      }
}

TEST_CASE("the one-block counting sort finds the first invalid choice") {
  std::vector<int> picks(300, 1);
  picks[170] = 3;
  picks[40] = -2;
  picks[260] = 9;
  HostPlan plan(300, 3);
  for (int threads : {1, 32, 512}) CHECK(counting_sort(plan.plan, picks, threads) == 40);
}

TEST_CASE("group starts by binary search over sorted keys") {
  const std::vector<unsigned> keys = {0, 0, 2, 2, 2, 3, 5};
  const int count = static_cast<int>(keys.size());
  const int expected[] = {0, 2, 2, 5, 6, 6, 7, 7};
  for (unsigned key = 0; key < 8; ++key) CHECK(math::lower_bound_key(keys.data(), count, key) == expected[key]);
  CHECK(math::lower_bound_key(keys.data(), 0, 1) == 0);
}

TEST_CASE_TEMPLATE("row loops driven lane by lane match the host executor", T, float, half_t, bfloat16_t) {
  host::Executor executor(2);
  constexpr index_t stride = 96;  // past every row: poison that must stay
  for (index_t cols : {index_t{0}, index_t{3}, index_t{8}, index_t{75}, index_t{96}})
    for (int lanes : {1, 5, 32, 128}) {
      CAPTURE(cols);
      CAPTURE(lanes);
      const test::HostMatrix<T> source = test::random_matrix<T>(2, stride, 1);
      test::HostMatrix<T> got(2, stride), expected(2, stride);
      test::fill_poison(got);
      test::fill_poison(expected);
      const ConstMatrixView<T> src = source.view().first_cols(cols);
      const int index = 1;

      for (int lane = 0; lane < lanes; ++lane)
        math::copy_row_lane(got.view().row(0), src.row(1), int(cols), lane, lanes);
      executor.gather_rows(expected.view().first_cols(cols).first_rows(1), src, &index);
      CHECK(test::bitwise_equal(got.values, expected.values));

      for (int lane = 0; lane < lanes; ++lane)
        math::add_row_lane(got.view().row(0), src.row(0), int(cols), lane, lanes);
      const int zero = 0;
      executor.scatter_add_rows(expected.view().first_cols(cols), src.first_rows(1), &zero);
      CHECK(test::bitwise_equal(got.values, expected.values));

      for (int lane = 0; lane < lanes; ++lane) math::relu_row_lane(got.view().row(0), int(cols), lane, lanes);
      executor.relu_in_place(expected.view().first_cols(cols).first_rows(1));
      CHECK(test::bitwise_equal(got.values, expected.values));

      float squares = 0.0f;
      math::ContributionSums sums;
      for (int lane = 0; lane < lanes; ++lane) {
        squares += math::sum_of_squares_lane(src.row(0), int(cols), lane, lanes);
        sums = sums + math::contribution_sums_lane(src.row(0), src.row(1), int(cols), lane, lanes);
      }
      double reference_squares = 0.0, reference_block = 0.0, reference_output = 0.0;
      for (index_t c = 0; c < cols; ++c) {
        const double f = to_float(src(0, c));
        const double out = double{to_float(src(1, c))} + f;
        reference_squares += f * f;
        reference_block += f * f;
        reference_output += out * out;
      }
      CHECK(squares == doctest::Approx(reference_squares).epsilon(1e-5));
      CHECK(sums.block == doctest::Approx(reference_block).epsilon(1e-5));
      CHECK(sums.output == doctest::Approx(reference_output).epsilon(1e-5));

      if (cols % math::vector_width<T> != 0) continue;  // RMSNorm's reduction length contract
      const test::HostMatrix<T> weight = test::random_matrix<T>(1, stride, 2);
      const float scale = math::rms_scale(squares, int(cols), 1e-5f);
      for (int lane = 0; lane < lanes; ++lane)
        math::scale_row_lane(got.view().row(1), src.row(0), weight.view().row(0), scale, int(cols), lane, lanes);
      executor.rms_norm(expected.view().first_cols(cols).row_range(1, 1), src.first_rows(1),
                        weight.view().first_cols(cols), 1e-5f);
      for (index_t c = 0; c < cols; ++c)
        CHECK(to_float(got.values[stride + c]) ==
              doctest::Approx(to_float(expected.values[stride + c])).epsilon(1e-2));
      for (index_t c = cols; c < stride; ++c) CHECK(std::isnan(to_float(got.values[stride + c])));
    }
}

TEST_CASE_TEMPLATE("the widening row loop driven lane by lane gives every element's float value", T, float, half_t,
                   bfloat16_t) {
  constexpr index_t stride = 96;  // past every row: poison that must stay
  const test::HostMatrix<T> source = test::random_matrix<T>(1, stride, 3);
  for (index_t cols : {index_t{0}, index_t{3}, index_t{8}, index_t{75}, index_t{96}})
    for (int lanes : {1, 5, 32, 128}) {
      CAPTURE(cols);
      CAPTURE(lanes);
      test::HostMatrix<float> wide(1, stride);
      test::fill_poison(wide);
      for (int lane = 0; lane < lanes; ++lane)
        math::widen_row_lane(wide.view().row(0), source.view().row(0), int(cols), lane, lanes);
      for (index_t c = 0; c < cols; ++c) CHECK(wide.values[c] == to_float(source.values[c]));
      for (index_t c = cols; c < stride; ++c) CHECK(std::isnan(wide.values[c]));
    }
}
