// SubnetworkConfig files: what read_subnetwork_config accepts (left-out keys
// keep the stored layer), what it refuses and how it says so, and that
// subnetwork_config_json writes what it reads.
#include <doctest/doctest.h>

#include <fstream>
#include <string>

#include "elastic/model/subnetwork_config_file.hpp"
#include "support/error_message.hpp"
#include "support/python.hpp"

using namespace elastic;
using elastic::model::SubnetworkConfig;

namespace {

// Three layers: GQA + SwiGLU (both storing a linear map beside them),
// linear attention + no FFN, GQA + linear FFN.
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
  model.layers[0].attention_has_linear = model.layers[0].ffn_has_linear = true;
  return model;
}

SubnetworkConfig parse(const std::string& text, int width_multiple = 1) {
  return model::parse_subnetwork_config(io::parse_json_document(text, "config.json"), "config.json",
                                        three_layer_model(), width_multiple);
}

std::string parse_error(const std::string& text, int width_multiple = 1) {
  return test::error_of<io::FileError>([&] { parse(text, width_multiple); });
}

}  // namespace

TEST_CASE("subnetwork config file: left-out keys keep the stored layer") {
  const SubnetworkConfig config = parse(R"({"layers": [{"heads": 3, "mlp_width": 256},
                                                      {"skip_attention": true},
                                                      {"skip_ffn": true}]})");
  REQUIRE(config.layers.size() == 3);
  CHECK(config.layers[0].heads == 3);
  CHECK(config.layers[0].mlp_width == 256);
  CHECK_FALSE(config.layers[0].skip_attention);
  CHECK(config.layers[1].heads == 0);
  CHECK(config.layers[1].skip_attention);
  CHECK(config.layers[2].heads == 4);
  CHECK(config.layers[2].skip_ffn);
  CHECK_FALSE(config.layers[2].skip_attention);

  const SubnetworkConfig stored = parse(R"({"layers": [{}, {}, {}]})");
  const SubnetworkConfig full = SubnetworkConfig::full(three_layer_model());
  for (std::size_t i = 0; i < 3; ++i) {
    CHECK(stored.layers[i].heads == full.layers[i].heads);
    CHECK(stored.layers[i].mlp_width == full.layers[i].mlp_width);
  }
}

TEST_CASE("subnetwork config file: written configurations read back the same") {
  SubnetworkConfig config = SubnetworkConfig::full(three_layer_model());
  config.layers[0].heads = 1;
  config.layers[0].mlp_width = 128;
  config.layers[1].skip_attention = true;
  config.layers[2].skip_ffn = true;
  config.layers[0].linear_ffn = true;
  const std::string text = model::subnetwork_config_json(config);
  CHECK(text.find("\"linear_ffn\":true") != std::string::npos);
  CHECK(text.find("linear_attention") == std::string::npos);  // written only when true
  test::TemporaryDirectory folder;
  const auto path = folder.path() / "config.json";
  std::ofstream(path) << model::subnetwork_config_json(config) << '\n';
  const SubnetworkConfig read = model::read_subnetwork_config(path, three_layer_model());
  for (std::size_t i = 0; i < 3; ++i) {
    CAPTURE(i);
    CHECK(read.layers[i].heads == config.layers[i].heads);
    CHECK(read.layers[i].mlp_width == config.layers[i].mlp_width);
    CHECK(read.layers[i].skip_attention == config.layers[i].skip_attention);
    CHECK(read.layers[i].skip_ffn == config.layers[i].skip_ffn);
  }
  CHECK(read == config);
}

TEST_CASE("subnetwork config file: a half runs as its stored linear map where the layer has one") {
  const SubnetworkConfig config = parse(R"({"layers": [{"linear_attention": true, "linear_ffn": true},
                                                      {"linear_attention": true}, {}]})");
  CHECK(config.layers[0].linear_attention);
  CHECK(config.layers[0].linear_ffn);
  CHECK(config.layers[1].linear_attention);  // a linear block may say so
  CHECK_FALSE(config.layers[2].linear_attention);
}

TEST_CASE("subnetwork config file: bad files are refused with the file, the layer and what was expected") {
  const auto refused = [](const std::string& text, const std::string& expected, int width_multiple = 1) {
    const std::string message = parse_error(text, width_multiple);
    CAPTURE(message);
    CHECK(message.rfind("config.json: ", 0) == 0);
    CHECK(message.find(expected) != std::string::npos);
  };
  refused(R"([1, 2])", "expected an object with one key, \"layers\"");
  refused(R"({"layers": [], "extra": 1})", "expected an object with one key, \"layers\"");
  refused(R"({"layers": [{}, {}]})", "an array of 3 objects (one per layer of the model), found 2 entries");
  refused(R"({"layers": {"heads": 1}})", "an array of 3 objects");
  refused(R"({"layers": [{}, 7, {}]})", "layer 1: expected an object, found number");
  refused(R"({"layers": [{"width": 8}, {}, {}]})", "layer 0: unknown key \"width\"");
  refused(R"({"layers": [{"heads": -1}, {}, {}]})", "layer 0: \"heads\" must be a non-negative integer");
  refused(R"({"layers": [{"heads": 2.5}, {}, {}]})", "layer 0: \"heads\" must be a non-negative integer");
  refused(R"({"layers": [{"mlp_width": 1e12}, {}, {}]})", "\"mlp_width\" must be a non-negative integer");
  refused(R"({"layers": [{"mlp_width": 4294967296}, {}, {}]})", "fits in int, found 4294967296");
  refused(R"({"layers": [{}, {}, {"skip_ffn": 1}]})", "layer 2: \"skip_ffn\" must be true or false, found number 1");
  refused(R"({"layers": [{"heads": 5}, {}, {}]})", "layer 0 uses 5 query heads, expected 1 to the stored 4");
  refused(R"({"layers": [{}, {"heads": 2}, {}]})", "layer 1 has linear attention, so its query heads must be 0");
  refused(R"({"layers": [{"mlp_width": 100}, {}, {}]})", "layer 0 uses MLP width 100, expected a multiple of 8", 8);
  refused(R"({"layers": [{}, {}, {"mlp_width": 8}]})", "layer 2 has linear FFN, so its MLP width must be 0");
  refused(R"({"layers": [{}, {}, {"linear_attention": true}]})",
          "layer 2 asks for linear attention, but its gqa attention has no linear map stored");
  refused(R"({"layers": [{}, {"linear_ffn": true}, {}]})",
          "layer 1 asks for a linear FFN, but its none FFN has no linear map stored");
  refused(R"({"layers": [{"linear_ffn": true, "skip_ffn": true}, {}, {}]})",
          "layer 0 asks to run a half as a linear map and to skip it");
  refused(R"({"layers": [{"linear_ffn": 1}, {}, {}]})", "layer 0: \"linear_ffn\" must be true or false");
}

TEST_CASE("subnetwork config file: a missing or malformed file names the file") {
  test::TemporaryDirectory folder;
  CHECK(test::error_of<io::FileError>([&] {
          model::read_subnetwork_config(folder.path() / "absent.json", three_layer_model());
        }).find("absent.json") != std::string::npos);
  const auto path = folder.path() / "broken.json";
  std::ofstream(path) << "{\"layers\": [";
  CHECK(test::error_of<io::FileError>([&] { model::read_subnetwork_config(path, three_layer_model()); })
            .find("broken.json: expected well-formed UTF-8 JSON") != std::string::npos);
}
