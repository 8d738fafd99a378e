// Budget tables: what write_budget_table writes reads back the same, which
// entry a budget gets (exact, between, above the largest, below the
// smallest), that the router's per-layer choices decode to the entries'
// sub-networks, and what each kind of broken file is told.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "elastic/model/budget_table.hpp"
#include "support/error_message.hpp"
#include "support/python.hpp"

using namespace elastic;
using elastic::model::BudgetEntry;
using elastic::model::BudgetTable;
using elastic::model::SubnetworkConfig;

namespace {

// Three layers: GQA + SwiGLU, linear attention + no FFN, GQA + linear FFN.
io::ModelDescription three_layer_model() {
  io::ModelDescription model;
  model.architecture = "nemotron-nas";
  model.hidden = 256;
  model.heads = 4;
  model.head_dim = 64;
  model.vocab = 96;
  model.layers = {{io::AttentionKind::gqa, 2, io::FfnKind::swiglu, 512},
                  {io::AttentionKind::linear, 0, io::FfnKind::none, 0},
                  {io::AttentionKind::gqa, 4, io::FfnKind::linear, 0}};
  return model;
}

// Fractions 0.4, 0.7 and 1: smaller sub-networks as the budget shrinks.
BudgetTable three_entry_table() {
  const io::ModelDescription model = three_layer_model();
  SubnetworkConfig small = SubnetworkConfig::full(model), medium = small, full = small;
  small.layers[0].heads = 1;
  small.layers[0].mlp_width = 128;
  small.layers[1].skip_attention = true;
  small.layers[2].skip_ffn = true;
  medium.layers[0].mlp_width = 256;
  return BudgetTable(
      0.01, "decode",
      {{0.4, 0.004, 1.0e6, small, 2.5}, {0.7, 0.0068, 2.0e6, medium, 0.75}, {1.0, 0.01, 3.0e6, full, {}}}, model);
}

const char* const valid_entry =
    R"({"fraction": 0.5, "latency_s": 0.005, "memory_bytes": 100, "config": {"layers": [{}, {}, {}]}})";

std::string read_error(const std::string& text) {
  test::TemporaryDirectory folder;
  const auto path = folder.path() / "budgets.json";
  std::ofstream(path) << text;
  return test::error_of<io::FileError>([&] { model::read_budget_table(path, three_layer_model()); });
}

std::string table_with_entries(const std::string& entries) {
  return R"({"format": 1, "full_latency_s": 0.01, "phase": "decode", "entries": [)" + entries + "]}";
}

}  // namespace

TEST_CASE("budget table: a written table reads back the same, extra keys and all") {
  const BudgetTable table = three_entry_table();
  test::TemporaryDirectory folder;
  const auto path = folder.path() / "budgets.json";
  nlohmann::ordered_json extra;
  extra["search"] = {{"solver", "cbc"}, {"budgets", {0.4, 0.7, 1.0}}};
  model::write_budget_table(path, table, extra);

  const BudgetTable read = model::read_budget_table(path, three_layer_model());
  CHECK(read.full_latency_s() == table.full_latency_s());
  CHECK(read.phase() == "decode");
  REQUIRE(read.entries().size() == 3);
  for (std::size_t i = 0; i < 3; ++i) {
    CAPTURE(i);
    const BudgetEntry &got = read.entries()[i], &expected = table.entries()[i];
    CHECK(got.fraction == expected.fraction);
    CHECK(got.latency_s == expected.latency_s);
    CHECK(got.memory_bytes == expected.memory_bytes);
    CHECK(got.predicted_score == expected.predicted_score);
    CHECK(got.config == expected.config);
  }
  CHECK_FALSE(read.entries()[2].predicted_score.has_value());

  const nlohmann::json document = io::read_json_file(path, 1u << 20);
  CHECK(document.at("search").at("solver") == "cbc");
  CHECK(document.at("entries")[0].at("config").at("layers").size() == 3);
  // Nothing is left beside the table but the table.
  CHECK(std::distance(std::filesystem::directory_iterator(folder.path()), std::filesystem::directory_iterator()) == 1);
}

TEST_CASE("budget table: writing refuses extra keys that are not an object or clash with the table's own") {
  const BudgetTable table = three_entry_table();
  test::TemporaryDirectory folder;
  const auto path = folder.path() / "budgets.json";
  CHECK(test::error_of([&] {
          model::write_budget_table(path, table, nlohmann::ordered_json::array());
        }).find("must be an object, found array") != std::string::npos);
  CHECK(test::error_of([&] {
          model::write_budget_table(path, table, {{"phase", "prefill"}});
        }).find("may not include \"phase\"") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(path));
}

TEST_CASE("budget table: a budget gets the entry with the largest fraction not above it") {
  const BudgetTable table = three_entry_table();
  CHECK(table.entry_for(0.4).fraction == 0.4);
  CHECK(table.entry_for(0.7).fraction == 0.7);
  CHECK(table.entry_for(0.69).fraction == 0.4);
  CHECK(table.entry_for(0.85).fraction == 0.7);
  CHECK(table.entry_for(1.0).fraction == 1.0);
  CHECK(table.entry_for(1.4).fraction == 1.0);
  CHECK(table.entry_for(0.7).config == table.entries()[1].config);

  const std::string below = test::error_of([&] { table.entry_for(0.3); });
  CHECK(below.find("budget 0.3 is below the smallest entry, fraction 0.4 (latency 4 ms of the full 10 ms, decode)") !=
        std::string::npos);
  CHECK(test::error_of([&] { table.entry_for(std::nan("")); }).find("NaN") != std::string::npos);
}

TEST_CASE("budget table: the router's choices decode to each entry's sub-network") {
  const BudgetTable table = three_entry_table();
  // The distinct layer choices: the small entry's three, then the medium
  // and full entries' layer 0 (their layers 1 and 2 repeat the full model's).
  CHECK(table.layer_choices().size() == 7);
  CHECK(table.router().layers() == 3);
  for (const BudgetEntry& entry : table.entries()) {
    CAPTURE(entry.fraction);
    CHECK(table.config_of(table.router().lookup(entry.fraction)) == entry.config);
    CHECK(table.config_of(table.router().lookup(entry.fraction + 0.01)) == entry.config);
  }
  CHECK(table.router().lookup(0.4) == std::vector<int>{0, 1, 2});
  CHECK(test::error_of([&] {
          table.config_of(std::vector<int>{0, 1});
        }).find("expected one per layer (3)") != std::string::npos);
  CHECK(test::error_of([&] {
          table.config_of(std::vector<int>{0, 1, 7});
        }).find("choice 7 is not in [0, 7)") != std::string::npos);
}

TEST_CASE("budget table: a table built in code is checked like a file") {
  const io::ModelDescription model = three_layer_model();
  const SubnetworkConfig full = SubnetworkConfig::full(model);
  const auto error = [&](double full_latency, std::vector<BudgetEntry> entries) {
    return test::error_of([&] { BudgetTable(full_latency, "decode", std::move(entries), model); });
  };
  CHECK(error(0.0, {{0.5, 0.0, 0.0, full, {}}}).find("must be a positive number of seconds, found 0") !=
        std::string::npos);
  CHECK(error(0.01, {}).find("expected at least one entry") != std::string::npos);
  CHECK(error(0.01, {{0.5, 0.0, 0.0, full, std::nan("")}}).find("entry 0 has predicted score nan") !=
        std::string::npos);
  SubnetworkConfig too_wide = full;
  too_wide.layers[0].mlp_width = 1024;
  CHECK(error(0.01, {{0.5, 0.0, 0.0, too_wide, {}}}).find("entry 0: SubnetworkConfig: layer 0 uses MLP width 1024") !=
        std::string::npos);
}

TEST_CASE("budget table: broken files are refused with the file, the entry and the layer named") {
  CHECK(read_error(R"({"format": 1, "entries": [)").find("budgets.json: expected well-formed UTF-8 JSON") !=
        std::string::npos);
  CHECK(read_error("[]").find("budgets.json: expected a budget table object, found array") != std::string::npos);
  CHECK(read_error(R"({"format": 2, "full_latency_s": 0.01, "phase": "decode", "entries": []})")
            .find("expected \"format\": 1, found number 2") != std::string::npos);
  CHECK(read_error(R"({"format": 1, "phase": "decode", "entries": []})")
            .find("expected a key \"full_latency_s\", found none") != std::string::npos);
  CHECK(read_error(R"({"format": 1, "full_latency_s": 0.01, "phase": 3, "entries": []})")
            .find("expected \"phase\" to be a string (decode or prefill), found number 3") != std::string::npos);
  CHECK(read_error(R"({"format": 1, "full_latency_s": 0.01, "phase": "decode"})")
            .find("expected \"entries\" to be an array, found no \"entries\" key") != std::string::npos);
  CHECK(read_error(table_with_entries("")).find("expected at least one entry, found none") != std::string::npos);

  const std::string second =
      R"(, {"fraction": 0.5, "latency_s": 0.004, "memory_bytes": 10, "config": {"layers": [{}, {}, {}]}})";
  CHECK(read_error(table_with_entries(std::string(valid_entry) + second))
            .find("budgets.json: budget table: entry 1 has fraction 0.5 after 0.5, expected strictly increasing "
                  "fractions") != std::string::npos);
  CHECK(
      read_error(table_with_entries(
                     R"({"fraction": 1.6, "latency_s": 0.01, "memory_bytes": 1, "config": {"layers": [{}, {}, {}]}})"))
          .find("entry 0 has fraction 1.6, expected a fraction in (0, 1.5]") != std::string::npos);
  CHECK(read_error(table_with_entries(
                       R"({"fraction": 0, "latency_s": 0.01, "memory_bytes": 1, "config": {"layers": [{}, {}, {}]}})"))
            .find("entry 0 has fraction 0, expected a fraction in (0, 1.5]") != std::string::npos);
  CHECK(
      read_error(table_with_entries(
                     R"({"fraction": 0.5, "latency_s": -0.01, "memory_bytes": 1, "config": {"layers": [{}, {}, {}]}})"))
          .find("entry 0 has latency -0.01 s, expected a finite non-negative number") != std::string::npos);
  CHECK(
      read_error(table_with_entries(
                     R"({"fraction": 0.5, "latency_s": 0.01, "memory_bytes": -1, "config": {"layers": [{}, {}, {}]}})"))
          .find("entry 0 has memory -1 bytes") != std::string::npos);
  CHECK(read_error(table_with_entries(R"({"fraction": 0.5, "latency_s": 0.01, "memory_bytes": 1})"))
            .find("budgets.json: entry 0: expected a key \"config\", found none") != std::string::npos);
  CHECK(read_error(table_with_entries(R"({"fraction": 0.5, "latency": 0.01})"))
            .find("entry 0: unknown key \"latency\"") != std::string::npos);
  CHECK(read_error(table_with_entries(R"({"fraction": "half", "latency_s": 0.01, "memory_bytes": 1, "config": {}})"))
            .find("entry 0: \"fraction\" must be a number, found string \"half\"") != std::string::npos);
  CHECK(
      read_error(
          table_with_entries(
              std::string(valid_entry) +
              R"(, {"fraction": 0.9, "latency_s": 0.01, "memory_bytes": 1, "config": {"layers": [{"mlp_width": 600}, {}, {}]}})"))
          .find("budgets.json: entry 1 \"config\": SubnetworkConfig: layer 0 uses MLP width 600") != std::string::npos);
  CHECK(
      read_error(
          table_with_entries(
              R"({"fraction": 0.5, "latency_s": 0.01, "memory_bytes": 1, "config": {"layers": [{}, {"heads": "two"}, {}]}})"))
          .find("budgets.json: entry 0 \"config\": layer 1: \"heads\" must be a non-negative integer") !=
      std::string::npos);
  CHECK(read_error(table_with_entries(
                       R"({"fraction": 0.5, "latency_s": 0.01, "memory_bytes": 1, "config": {"layers": [{}]}})"))
            .find("entry 0 \"config\": expected \"layers\" to be an array of 3 objects") != std::string::npos);
}
