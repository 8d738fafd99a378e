// Small text formatting helpers of the `elastic` CLI: byte sizes and counts
// with units, fixed-width padding, and token text quoted with its control
// characters escaped so a table stays on one line.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace elastic::cli {

inline std::string with_unit(double value, const char* const* units, int unit_count, double step) {
  int unit = 0;
  while (value >= step && unit + 1 < unit_count) {
    value /= step;
    ++unit;
  }
  char text[64];
  std::snprintf(text, sizeof text, unit == 0 ? "%.0f %s" : "%.2f %s", value, units[unit]);
  return text;
}

inline std::string bytes_text(std::uint64_t bytes) {
  static const char* const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  return with_unit(double(bytes), units, 5, 1024.0);
}

inline std::string count_text(std::int64_t count) {
  static const char* const units[] = {"", "K", "M", "B"};
  return with_unit(double(count), units, 4, 1000.0);
}

inline std::string pad(std::string text, std::size_t width) {
  if (text.size() < width) text.append(width - text.size(), ' ');
  return text + " ";
}

inline std::string quoted_token(std::string_view text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += char(c);
    } else if (c < 0x20 || c == 0x7f) {
      char escape[8];
      std::snprintf(escape, sizeof escape, "\\x%02x", c);
      out += escape;
    } else {
      out += char(c);
    }
  }
  return out + "\"";
}

}  // namespace elastic::cli
