// Chat template tests: family recognition, rendering of each family
// (SmolLM2's default system message included), errors; in the "reference"
// suite, the same conversations rendered by jinja2 from the real template
// texts.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "elastic/io/chat_template.hpp"
#include "support/error_message.hpp"
#include "support/python.hpp"

using elastic::io::ChatMessage;
using elastic::io::ChatTemplate;
using elastic::io::ChatTemplateFamily;

namespace {

// SmolLM2-Instruct's template, as its GGUF stores it.
constexpr std::string_view smollm2_template =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

using elastic::test::error_of;

}  // namespace

TEST_CASE("ChatML: SmolLM2's default system message when the conversation has none") {
  const ChatTemplate chat = ChatTemplate::from_text(smollm2_template);
  CHECK(chat.family() == ChatTemplateFamily::chatml);
  const std::vector<ChatMessage> user_only = {{"user", "Hi!"}};
  CHECK(chat.apply(user_only, true) ==
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n");
  const std::vector<ChatMessage> with_system = {{"system", "Be brief."}, {"user", "2+2?"}, {"assistant", "4"}};
  CHECK(chat.apply(with_system, false) ==
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n");
  CHECK(chat.apply({}, true) == "<|im_start|>assistant\n");
}

TEST_CASE("ChatML without a default system message writes none") {
  const ChatTemplate chat = ChatTemplate::from_text(
      "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
      "'<|im_end|>\\n'}}{% endfor %}");
  const std::vector<ChatMessage> messages = {{"user", "x"}};
  CHECK(chat.apply(messages, false) == "<|im_start|>user\nx<|im_end|>\n");
}

TEST_CASE("Llama 3 and Llama 2 families") {
  const ChatTemplate llama3 = ChatTemplate::from_text("{{ '<|start_header_id|>' }}", "<|begin_of_text|>", "<|eot_id|>");
  CHECK(llama3.family() == ChatTemplateFamily::llama3);
  const std::vector<ChatMessage> messages = {{"system", " sys "}, {"user", "hi\n"}};
  CHECK(llama3.apply(messages, true) ==
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nsys<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");

  const ChatTemplate llama2 = ChatTemplate::from_text("{{ '[INST] ' }}", "<s>", "</s>");
  CHECK(llama2.family() == ChatTemplateFamily::llama2);
  const std::vector<ChatMessage> turns = {{"system", "S"}, {"user", "a"}, {"assistant", "b"}, {"user", "c"}};
  CHECK(llama2.apply(turns, true) == "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\na [/INST] b </s><s>[INST] c [/INST]");
  const std::vector<ChatMessage> out_of_order = {{"assistant", "b"}};
  CHECK(error_of([&] { (void)llama2.apply(out_of_order, false); }).find("must alternate") != std::string::npos);
  CHECK(error_of([&] { (void)llama2.apply({}, false); }).find("conversation is empty") != std::string::npos);
}

TEST_CASE("unknown templates are errors that suggest raw-prompt mode") {
  const std::string unknown = error_of([] { (void)ChatTemplate::from_text("{{ '<start_of_turn>' }}"); });
  CHECK(unknown.find("unrecognised chat template") != std::string::npos);
  CHECK(unknown.find("raw text") != std::string::npos);
  CHECK(error_of([] { (void)ChatTemplate::from_text(""); }).find("no chat template") != std::string::npos);
  CHECK(error_of([] { (void)ChatTemplate::from_text("<|start_header_id|> Cutting Knowledge Date"); })
            .find("Llama 3.1") != std::string::npos);
}

TEST_SUITE("reference") {
  TEST_CASE("chat templates render as jinja2 renders the real templates") {
    const nlohmann::json reference = nlohmann::json::parse(elastic::test::run_reference_script(
        "chat_template_reference.py", {elastic::test::default_model_path().string()}));
    int matched = 0;
    int total = 0;
    for (const nlohmann::json& entry : reference["cases"]) {
      const ChatTemplate chat = ChatTemplate::from_text(entry["template"].get<std::string>(),
                                                        entry["bos"].get<std::string>(), entry["eos"].get<std::string>());
      std::vector<ChatMessage> messages;
      for (const nlohmann::json& message : entry["messages"])
        messages.push_back({message["role"].get<std::string>(), message["content"].get<std::string>()});
      const bool generation_prompt = entry["add_generation_prompt"].get<bool>();
      ++total;
      if (entry["rendered"].is_null()) {
        const bool raises = error_of([&] { (void)chat.apply(messages, generation_prompt); }) != "(no error)";
        CHECK_MESSAGE(raises, entry.dump());
        matched += raises;
      } else {
        const std::string rendered = chat.apply(messages, generation_prompt);
        CHECK_MESSAGE(rendered == entry["rendered"].get<std::string>(), entry.dump());
        matched += rendered == entry["rendered"].get<std::string>();
      }
    }
    MESSAGE("chat templates: " << matched << " / " << total << " renderings match jinja2");
  }
}
