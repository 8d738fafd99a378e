// The Pareto plot's SVG: balanced markup, one marker per point inside each
// named series, axes that cover the data, pixel positions that follow the
// values (up in x is right, up in y is up, on linear and logarithmic axes),
// the same bytes for the same plot, and its errors.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <string>
#include <vector>

#include "elastic/search/pareto_plot.hpp"
#include "support/error_message.hpp"
#include "support/python.hpp"

using namespace elastic;
using elastic::search::ParetoPlot;

namespace {

ParetoPlot three_series_plot(bool log_y) {
  ParetoPlot plot;
  plot.title = "SmolLM2 <135M> & its sub-networks";
  plot.y.logarithmic = log_y;
  plot.series = {{"searched", {{4.1, 18.5, "0.6"}, {3.2, 24.0, "0.45"}, {5.3, 16.2, "0.8"}, {6.4, 15.1, "0.95"}}},
                 {"uniform width", {{3.5, 40.0, "mlp 512"}, {5.0, 21.0, "mlp 1024"}}},
                 {"layer drop", {{4.8, 90.0, "4 layers"}, {6.0, 33.0, "2 layers"}, {2.9, 400.0, "8 layers"}}}};
  plot.parent = search::PlotPoint{6.7, 14.8, "SmolLM2-135M"};
  return plot;
}

// Checks that every element opened is closed in order, and that text and
// attributes carry no raw '<' or unknown entity; returns the element names.
std::vector<std::string> check_markup(const std::string& svg) {
  std::vector<std::string> open, seen;
  const std::regex entity("&(amp|lt|gt|quot|apos);");
  std::size_t at = 0;
  while ((at = svg.find('<', at)) != std::string::npos) {
    const std::size_t end = svg.find('>', at);
    REQUIRE(end != std::string::npos);
    const std::string tag = svg.substr(at + 1, end - at - 1);
    CHECK(tag.find('<') == std::string::npos);
    if (tag.front() == '?') {
      CHECK(at == 0);
    } else if (tag.front() == '/') {
      REQUIRE_FALSE(open.empty());
      CHECK(tag.substr(1) == open.back());
      open.pop_back();
    } else {
      const std::string name = tag.substr(0, tag.find_first_of(" /"));
      seen.push_back(name);
      if (tag.back() != '/') open.push_back(name);
    }
    const std::size_t next = svg.find('<', end);
    const std::string text = svg.substr(end + 1, next == std::string::npos ? std::string::npos : next - end - 1);
    for (std::size_t amp = text.find('&'); amp != std::string::npos; amp = text.find('&', amp + 1))
      CHECK(std::regex_search(text.substr(amp), entity, std::regex_constants::match_continuous));
    at = end;
  }
  CHECK(open.empty());
  return seen;
}

double attribute(const std::string& element, const std::string& name) {
  const std::size_t at = element.find(" " + name + "=\"");
  REQUIRE(at != std::string::npos);
  return std::strtod(element.c_str() + at + name.size() + 3, nullptr);
}

// The <circle class="point" ...> elements of the series group `name`.
std::vector<std::string> series_points(const std::string& svg, const std::string& name) {
  const std::size_t begin = svg.find("<g class=\"series\" data-series=\"" + name + "\">");
  REQUIRE(begin != std::string::npos);
  const std::size_t end = svg.find("</g>", begin);
  std::vector<std::string> points;
  for (std::size_t at = svg.find("<circle class=\"point\"", begin); at < end;
       at = svg.find("<circle class=\"point\"", at + 1))
    points.push_back(svg.substr(at, svg.find('>', at) - at));
  return points;
}

}  // namespace

TEST_CASE("pareto plot: balanced markup with every series, its points and the parent marker") {
  for (bool log_y : {false, true}) {
    CAPTURE(log_y);
    const ParetoPlot plot = three_series_plot(log_y);
    const std::string svg = search::pareto_svg(plot);
    const std::vector<std::string> elements = check_markup(svg);
    CHECK(elements.front() == "svg");
    CHECK(svg.find("SmolLM2 &lt;135M&gt; &amp; its sub-networks") != std::string::npos);
    for (const search::PlotSeries& series : plot.series) {
      CAPTURE(series.name);
      CHECK(series_points(svg, series.name).size() == series.points.size());
      CHECK(svg.find(">" + series.name + "</text>") != std::string::npos);  // in the legend
    }
    std::size_t markers = 0;
    for (std::size_t at = svg.find("class=\"point\""); at != std::string::npos;
         at = svg.find("class=\"point\"", at + 1))
      ++markers;
    CHECK(markers == 9);
    CHECK(svg.find("<g class=\"parent\">") != std::string::npos);
    CHECK(svg.find(">SmolLM2-135M</text>") != std::string::npos);
    CHECK((svg.find("(log scale)") != std::string::npos) == log_y);
    CHECK(svg == search::pareto_svg(plot));
  }
}

TEST_CASE("pareto plot: every point lies in the plot area and its pixels follow its values") {
  for (bool log_y : {false, true}) {
    CAPTURE(log_y);
    const std::string svg = search::pareto_svg(three_series_plot(log_y));
    const std::size_t area_at = svg.find("<rect class=\"plot-area\"");
    REQUIRE(area_at != std::string::npos);
    const std::string area = svg.substr(area_at, svg.find('>', area_at) - area_at);
    const double left = attribute(area, "x"), top = attribute(area, "y");
    const double right = left + attribute(area, "width"), bottom = top + attribute(area, "height");

    std::vector<std::string> points;
    for (const char* name : {"searched", "uniform width", "layer drop"}) {
      const std::vector<std::string> series = series_points(svg, name);
      points.insert(points.end(), series.begin(), series.end());
    }
    REQUIRE(points.size() == 9);
    for (const std::string& a : points) {
      CHECK(attribute(a, "cx") >= left);
      CHECK(attribute(a, "cx") <= right);
      CHECK(attribute(a, "cy") >= top);
      CHECK(attribute(a, "cy") <= bottom);
      for (const std::string& b : points) {
        if (attribute(a, "data-x") < attribute(b, "data-x")) CHECK(attribute(a, "cx") < attribute(b, "cx"));
        if (attribute(a, "data-y") < attribute(b, "data-y")) CHECK(attribute(a, "cy") > attribute(b, "cy"));
      }
    }
  }
}

TEST_CASE("pareto plot: axis scales cover the data with ticks inside them") {
  const std::vector<std::vector<double>> cases = {{3.2, 6.7}, {14.8, 400.0}, {0.45, 0.5, 1.0}, {7.0},
                                                  {0.0},      {-3.0, 2.0},   {1e-3, 1e3},      {15.0, 18.0}};
  for (const std::vector<double>& values : cases)
    for (bool logarithmic : {false, true}) {
      if (logarithmic && values.front() <= 0) continue;
      CAPTURE(values.front());
      CAPTURE(logarithmic);
      const search::AxisScale scale = search::AxisScale::covering(values, logarithmic);
      CHECK(scale.low < scale.high);
      CHECK(scale.ticks.size() >= 2);
      for (double value : values) {
        CHECK(scale.low <= value);
        CHECK(value <= scale.high);
        CHECK(scale.position(value) >= 0.0);
        CHECK(scale.position(value) <= 1.0);
      }
      for (std::size_t i = 0; i < scale.ticks.size(); ++i) {
        CHECK(scale.ticks[i] >= scale.low - 1e-12 * (std::abs(scale.low) + 1));
        CHECK(scale.ticks[i] <= scale.high + 1e-12 * (std::abs(scale.high) + 1));
        if (i > 0) CHECK(scale.ticks[i - 1] < scale.ticks[i]);
      }
    }
}

TEST_CASE("pareto plot: written whole, and nothing is written for a plot that cannot be drawn") {
  test::TemporaryDirectory folder;
  const auto path = folder.path() / "pareto.svg";
  search::write_pareto_svg(path, three_series_plot(true));
  std::ifstream file(path);
  CHECK(std::string(std::istreambuf_iterator<char>(file), {}) == search::pareto_svg(three_series_plot(true)));

  const auto error = [&](ParetoPlot plot) {
    const auto bad = folder.path() / "bad.svg";
    std::string message = test::error_of([&] { search::write_pareto_svg(bad, plot); });
    CHECK_FALSE(std::filesystem::exists(bad));
    return message;
  };
  ParetoPlot plot = three_series_plot(true);
  plot.series.clear();
  CHECK(error(plot).find("expected at least one series, found none") != std::string::npos);
  plot = three_series_plot(true);
  plot.series[1].points.clear();
  CHECK(error(plot).find("series \"uniform width\" has no points") != std::string::npos);
  plot = three_series_plot(false);
  plot.series[2].points[1].x = std::nan("");
  CHECK(error(plot).find("series \"layer drop\" point 1 has x = nan, expected a finite number") != std::string::npos);
  plot = three_series_plot(true);
  plot.series[0].points[3].y = 0.0;
  CHECK(error(plot).find("series \"searched\" point 3 has y = 0, expected a positive number on the logarithmic y "
                         "axis") != std::string::npos);
  plot = three_series_plot(true);
  plot.parent->y = INFINITY;
  CHECK(error(plot).find("the parent model has y = inf") != std::string::npos);
}
