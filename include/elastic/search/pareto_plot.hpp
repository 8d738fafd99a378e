// The Pareto front as a picture: quality (perplexity, y) against measured
// latency (x, in milliseconds or as a fraction of the full model), one
// joined line of markers per named series ("searched", "uniform width",
// "layer drop", ...) and the parent model as a marker of its own, with axes,
// ticks, gridlines, a legend and a title. The output is a plain SVG text
// built here without a plotting dependency, the same bytes for the same
// plot, so a recorded picture changes only when its numbers do. Either axis
// may be logarithmic. Every point also carries its values (data-x, data-y)
// and a hover title, so the file can be read back by scripts and people.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <filesystem>
#include <iterator>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "elastic/core/error.hpp"
#include "elastic/io/temporary_file.hpp"

namespace elastic::search {

struct PlotPoint {
  double x = 0.0;
  double y = 0.0;
  std::string label;  // shown when the pointer rests on the marker
};

struct PlotSeries {
  std::string name;  // the legend's text
  std::vector<PlotPoint> points;
};

struct PlotAxis {
  std::string label;
  bool logarithmic = false;
};

struct ParetoPlot {
  std::string title;
  PlotAxis x{"decode latency (ms)", false};
  PlotAxis y{"perplexity", false};
  std::vector<PlotSeries> series;
  std::optional<PlotPoint> parent;  // the model the sub-networks were cut from
  int width = 800;                  // pixels
  int height = 500;
};

// Where values fall along one axis: [low, high] covers every value (on a
// linear axis rounded out to whole ticks; on a logarithmic one padded by 5%
// of the decades spanned), with ticks at round numbers inside it.
struct AxisScale {
  double low = 0.0;
  double high = 1.0;
  bool logarithmic = false;
  std::vector<double> ticks;

  // 0 at low, 1 at high, increasing with the value.
  double position(double value) const {
    if (logarithmic) return (std::log10(value) - std::log10(low)) / (std::log10(high) - std::log10(low));
    return (value - low) / (high - low);
  }

  // The scale for `values`: finite, and positive on a logarithmic axis.
  static AxisScale covering(std::span<const double> values, bool logarithmic) {
    require(!values.empty(), "AxisScale: expected at least one value, found none");
    for (double value : values)
      require(std::isfinite(value) && (!logarithmic || value > 0), "AxisScale: found ", value, ", expected a finite",
              logarithmic ? " positive" : "", " number");
    const auto [smallest, largest] = std::minmax_element(values.begin(), values.end());
    AxisScale scale;
    scale.logarithmic = logarithmic;
    if (!logarithmic) {
      double low = *smallest, high = *largest;
      if (low == high) {
        const double pad = low == 0 ? 1.0 : std::abs(low) * 0.1;
        low -= pad;
        high += pad;
      }
      const double step = round_step((high - low) / 5);
      scale.low = std::floor(low / step) * step;
      scale.high = std::ceil(high / step) * step;
      scale.ticks = linear_ticks(scale.low, scale.high, step);
      return scale;
    }
    double low = std::log10(*smallest), high = std::log10(*largest);
    const double pad = low == high ? 0.1 : 0.05 * (high - low);
    scale.low = std::pow(10.0, low - pad);
    scale.high = std::pow(10.0, high + pad);
    // Decades, then 1-2-5, then every digit, whichever first gives three
    // ticks; a range narrower than that gets linear round ticks.
    for (std::vector<double> digits : {std::vector<double>{1}, {1, 2, 5}, {1, 2, 3, 4, 5, 6, 7, 8, 9}}) {
      scale.ticks.clear();
      for (int decade = static_cast<int>(std::floor(low - pad)); decade <= static_cast<int>(std::ceil(high + pad));
           ++decade)
        for (double digit : digits) {
          const double tick = digit * std::pow(10.0, decade);
          if (tick >= scale.low && tick <= scale.high) scale.ticks.push_back(tick);
        }
      if (scale.ticks.size() >= 3) return scale;
    }
    const double step = round_step((scale.high - scale.low) / 5);
    scale.ticks = linear_ticks(std::ceil(scale.low / step) * step, std::floor(scale.high / step) * step, step);
    return scale;
  }

 private:
  // 1, 2 or 5 times a power of ten, near `rough`.
  static double round_step(double rough) {
    const double power = std::pow(10.0, std::floor(std::log10(rough)));
    const double mantissa = rough / power;
    return (mantissa < 1.5 ? 1 : mantissa < 3 ? 2 : mantissa < 7 ? 5 : 10) * power;
  }

  static std::vector<double> linear_ticks(double first, double last, double step) {
    std::vector<double> ticks;
    const long count = std::lround((last - first) / step);
    for (long i = 0; i <= count; ++i) {
      const double tick = first + static_cast<double>(i) * step;
      ticks.push_back(std::abs(tick) < step * 1e-9 ? 0.0 : tick);
    }
    return ticks;
  }
};

namespace detail {

inline std::string xml_escaped(std::string_view text) {
  std::string escaped;
  for (char c : text) {
    switch (c) {
      case '&':
        escaped += "&amp;";
        break;
      case '<':
        escaped += "&lt;";
        break;
      case '>':
        escaped += "&gt;";
        break;
      case '"':
        escaped += "&quot;";
        break;
      case '\'':
        escaped += "&apos;";
        break;
      default:
        escaped += c;
    }
  }
  return escaped;
}

// A number as printf's format writes it (the C locale's decimal point).
inline std::string formatted(const char* format, double value) {
  char text[64];
  std::snprintf(text, sizeof text, format, value);
  return text;
}

inline std::string pixel(double value) { return formatted("%.2f", value); }

inline void check_plot_point(const PlotPoint& point, const ParetoPlot& plot, std::string_view where) {
  for (const auto& [value, axis, name] : {std::tuple{point.x, &plot.x, "x"}, std::tuple{point.y, &plot.y, "y"}}) {
    require(std::isfinite(value), "pareto plot: ", where, " has ", name, " = ", value, ", expected a finite number");
    require(!axis->logarithmic || value > 0, "pareto plot: ", where, " has ", name, " = ", value,
            ", expected a positive number on the logarithmic ", name, " axis");
  }
}

inline constexpr const char* series_colours[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                                 "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

}  // namespace detail

// The plot as SVG text. Throws elastic::Error, naming the series and the
// point, for no series, a series without points, a value that is not
// finite, or one not positive on a logarithmic axis.
inline std::string pareto_svg(const ParetoPlot& plot) {
  require(plot.width >= 320 && plot.height >= 240, "pareto plot: expected at least 320 x 240 pixels, found ",
          plot.width, " x ", plot.height);
  require(!plot.series.empty(), "pareto plot: expected at least one series, found none");
  std::vector<double> xs, ys;
  for (const PlotSeries& series : plot.series) {
    require(!series.points.empty(), "pareto plot: series \"", series.name, "\" has no points");
    for (std::size_t i = 0; i < series.points.size(); ++i) {
      detail::check_plot_point(series.points[i], plot,
                               elastic::detail::concat("series \"", series.name, "\" point ", i));
      xs.push_back(series.points[i].x);
      ys.push_back(series.points[i].y);
    }
  }
  if (plot.parent) {
    detail::check_plot_point(*plot.parent, plot, "the parent model");
    xs.push_back(plot.parent->x);
    ys.push_back(plot.parent->y);
  }
  const AxisScale x_scale = AxisScale::covering(xs, plot.x.logarithmic);
  const AxisScale y_scale = AxisScale::covering(ys, plot.y.logarithmic);

  // The plot area, with room for tick labels (left, below), the title
  // (above) and the legend (right).
  const double left = 70, top = 40, right = plot.width - 180.0, bottom = plot.height - 50.0;
  const auto px = [&](double x) { return left + x_scale.position(x) * (right - left); };
  const auto py = [&](double y) { return bottom - y_scale.position(y) * (bottom - top); };
  using detail::pixel;
  using detail::xml_escaped;

  std::string svg = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  svg += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(plot.width) + "\" height=\"" +
         std::to_string(plot.height) + "\" viewBox=\"0 0 " + std::to_string(plot.width) + " " +
         std::to_string(plot.height) + "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  svg += "<title>" + xml_escaped(plot.title) + "</title>\n";
  svg += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  svg += "<text class=\"title\" x=\"" + pixel((left + right) / 2) +
         "\" y=\"24\" text-anchor=\"middle\" "
         "font-size=\"16\">" +
         xml_escaped(plot.title) + "</text>\n";

  svg += "<g class=\"grid\" stroke=\"#e0e0e0\" stroke-width=\"1\">\n";
  for (double tick : x_scale.ticks)
    svg += "<line x1=\"" + pixel(px(tick)) + "\" y1=\"" + pixel(top) + "\" x2=\"" + pixel(px(tick)) + "\" y2=\"" +
           pixel(bottom) + "\"/>\n";
  for (double tick : y_scale.ticks)
    svg += "<line x1=\"" + pixel(left) + "\" y1=\"" + pixel(py(tick)) + "\" x2=\"" + pixel(right) + "\" y2=\"" +
           pixel(py(tick)) + "\"/>\n";
  svg += "</g>\n";
  svg += "<rect class=\"plot-area\" x=\"" + pixel(left) + "\" y=\"" + pixel(top) + "\" width=\"" + pixel(right - left) +
         "\" height=\"" + pixel(bottom - top) + "\" fill=\"none\" stroke=\"black\"/>\n";
  svg += "<g class=\"ticks\">\n";
  for (double tick : x_scale.ticks)
    svg += "<line x1=\"" + pixel(px(tick)) + "\" y1=\"" + pixel(bottom) + "\" x2=\"" + pixel(px(tick)) + "\" y2=\"" +
           pixel(bottom + 5) + "\" stroke=\"black\"/><text x=\"" + pixel(px(tick)) + "\" y=\"" + pixel(bottom + 18) +
           "\" text-anchor=\"middle\">" + detail::formatted("%.6g", tick) + "</text>\n";
  for (double tick : y_scale.ticks)
    svg += "<line x1=\"" + pixel(left - 5) + "\" y1=\"" + pixel(py(tick)) + "\" x2=\"" + pixel(left) + "\" y2=\"" +
           pixel(py(tick)) + "\" stroke=\"black\"/><text x=\"" + pixel(left - 8) + "\" y=\"" + pixel(py(tick) + 4) +
           "\" text-anchor=\"end\">" + detail::formatted("%.6g", tick) + "</text>\n";
  svg += "</g>\n";
  svg += "<text class=\"x-label\" x=\"" + pixel((left + right) / 2) + "\" y=\"" + pixel(plot.height - 12.0) +
         "\" text-anchor=\"middle\">" + xml_escaped(plot.x.label + (plot.x.logarithmic ? " (log scale)" : "")) +
         "</text>\n";
  svg += "<text class=\"y-label\" x=\"16\" y=\"" + pixel((top + bottom) / 2) +
         "\" text-anchor=\"middle\" "
         "transform=\"rotate(-90 16 " +
         pixel((top + bottom) / 2) + ")\">" + xml_escaped(plot.y.label + (plot.y.logarithmic ? " (log scale)" : "")) +
         "</text>\n";

  const auto marker = [&](const PlotPoint& point, const char* colour) {
    return "<circle class=\"point\" cx=\"" + pixel(px(point.x)) + "\" cy=\"" + pixel(py(point.y)) +
           "\" r=\"3.5\" fill=\"" + colour + "\" data-x=\"" + detail::formatted("%.17g", point.x) + "\" data-y=\"" +
           detail::formatted("%.17g", point.y) + "\"><title>" +
           xml_escaped(point.label + (point.label.empty() ? "" : ": ") + detail::formatted("x %g", point.x) +
                       detail::formatted(", y %g", point.y)) +
           "</title></circle>\n";
  };
  const auto diamond = [&](double x, double y) {
    return "M " + pixel(x) + " " + pixel(y - 7) + " L " + pixel(x + 7) + " " + pixel(y) + " L " + pixel(x) + " " +
           pixel(y + 7) + " L " + pixel(x - 7) + " " + pixel(y) + " Z";
  };
  // Each series joined in order of x, so a front reads left to right.
  for (std::size_t s = 0; s < plot.series.size(); ++s) {
    const PlotSeries& series = plot.series[s];
    const char* colour = detail::series_colours[s % std::size(detail::series_colours)];
    std::vector<std::size_t> order(series.points.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t a, std::size_t b) { return series.points[a].x < series.points[b].x; });
    svg += "<g class=\"series\" data-series=\"" + xml_escaped(series.name) + "\">\n<polyline fill=\"none\" stroke=\"" +
           colour + "\" stroke-width=\"1.5\" points=\"";
    for (std::size_t i = 0; i < order.size(); ++i) {
      if (i > 0) svg += ' ';
      svg += pixel(px(series.points[order[i]].x)) + "," + pixel(py(series.points[order[i]].y));
    }
    svg += "\"/>\n";
    for (std::size_t i : order) svg += marker(series.points[i], colour);
    svg += "</g>\n";
  }
  const std::string parent_name = plot.parent && !plot.parent->label.empty() ? plot.parent->label : "parent";
  if (plot.parent) {
    svg += "<g class=\"parent\"><path d=\"" + diamond(px(plot.parent->x), py(plot.parent->y)) +
           "\" fill=\"black\"/><text x=\"" + pixel(px(plot.parent->x) + 10) + "\" y=\"" +
           pixel(py(plot.parent->y) - 8) + "\">" + xml_escaped(parent_name) + "</text></g>\n";
  }

  svg += "<g class=\"legend\">\n";
  double row = top + 10;
  for (std::size_t s = 0; s < plot.series.size(); ++s, row += 20) {
    const char* colour = detail::series_colours[s % std::size(detail::series_colours)];
    svg += "<line x1=\"" + pixel(right + 15) + "\" y1=\"" + pixel(row) + "\" x2=\"" + pixel(right + 39) + "\" y2=\"" +
           pixel(row) + "\" stroke=\"" + colour + "\" stroke-width=\"1.5\"/><circle cx=\"" + pixel(right + 27) +
           "\" cy=\"" + pixel(row) + "\" r=\"3.5\" fill=\"" + colour + "\"/><text x=\"" + pixel(right + 45) +
           "\" y=\"" + pixel(row + 4) + "\">" + xml_escaped(plot.series[s].name) + "</text>\n";
  }
  if (plot.parent)
    svg += "<path d=\"" + diamond(right + 27, row) + "\" fill=\"black\"/><text x=\"" + pixel(right + 45) + "\" y=\"" +
           pixel(row + 4) + "\">" + xml_escaped(parent_name) + "</text>\n";
  svg += "</g>\n</svg>\n";
  return svg;
}

// Writes pareto_svg(plot) to `path`, whole or not at all (io::TemporaryFile);
// a plot that cannot be drawn throws before the file is touched.
inline void write_pareto_svg(const std::filesystem::path& path, const ParetoPlot& plot) {
  const std::string svg = pareto_svg(plot);
  io::TemporaryFile file(path);
  file.write(std::as_bytes(std::span(svg.data(), svg.size())));
  file.commit();
}

}  // namespace elastic::search
