// Prometheus text exposition: histograms, counters, the writer and a strict little parser.
#include "hybridserve/metrics.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <sstream>

namespace hs {

histogram::histogram(std::vector<double> upper_bounds) : bounds_(std::move(upper_bounds)) {
  std::sort(bounds_.begin(), bounds_.end());
  bounds_.erase(std::unique(bounds_.begin(), bounds_.end()), bounds_.end());
  bounds_.erase(
      std::remove_if(bounds_.begin(), bounds_.end(), [](double b) { return !std::isfinite(b); }),
      bounds_.end());
  counts_.assign(bounds_.size() + 1, 0);
}

void histogram::observe(double v) {
  if (std::isnan(v)) return;
  const auto i = std::size_t(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  std::lock_guard<std::mutex> lk(m_);
  counts_[i] += 1;
  sum_ += v;
  count_ += 1;
}

histogram::snapshot histogram::snap() const {
  std::lock_guard<std::mutex> lk(m_);
  snapshot s;
  s.bounds = bounds_;
  s.buckets.resize(counts_.size());
  uint64_t acc = 0;
  for (std::size_t i = 0; i < counts_.size(); ++i) s.buckets[i] = acc += counts_[i];
  s.sum = sum_;
  s.count = count_;
  return s;
}

std::vector<double> exponential_buckets(double start, double factor, int count) {
  std::vector<double> out;
  double b = start;
  for (int i = 0; i < count; ++i, b *= factor) out.push_back(b);
  return out;
}

void counter_family::add(const metric_labels& labels, double v) {
  std::lock_guard<std::mutex> lk(m_);
  values_[labels] += v;
}

std::vector<std::pair<metric_labels, double>> counter_family::values() const {
  std::lock_guard<std::mutex> lk(m_);
  return {values_.begin(), values_.end()};
}

std::string prometheus_number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.0f", v);
    return buf;
  }
  char buf[40];
  for (int prec = 6; prec <= 17; ++prec) {  // the shortest form that reads back exactly
    std::snprintf(buf, sizeof buf, "%.*g", prec, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

std::string prometheus_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

namespace {

std::string render_labels(const metric_labels& labels, const std::string& extra_key = {},
                          const std::string& extra_value = {}) {
  if (labels.empty() && extra_key.empty()) return {};
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) out += ",";
    first = false;
    out += k + "=\"" + prometheus_escape(v) + "\"";
  }
  if (!extra_key.empty()) {
    if (!first) out += ",";
    out += extra_key + "=\"" + prometheus_escape(extra_value) + "\"";
  }
  return out + "}";
}

std::string escape_help(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

}  // namespace

prometheus_writer::family& prometheus_writer::get(const std::string& name, const std::string& help,
                                                  const char* type) {
  for (auto& f : families_)
    if (f.name == name) return f;
  families_.push_back({name, help, type, {}});
  return families_.back();
}

void prometheus_writer::counter(const std::string& name, const std::string& help, double value,
                                const metric_labels& labels) {
  get(name, help, "counter")
      .lines.push_back(name + render_labels(labels) + " " + prometheus_number(value));
}

void prometheus_writer::gauge(const std::string& name, const std::string& help, double value,
                              const metric_labels& labels) {
  get(name, help, "gauge")
      .lines.push_back(name + render_labels(labels) + " " + prometheus_number(value));
}

void prometheus_writer::histogram(const std::string& name, const std::string& help,
                                  const histogram::snapshot& s, const metric_labels& labels) {
  auto& f = get(name, help, "histogram");
  for (std::size_t i = 0; i < s.buckets.size(); ++i) {
    const std::string le = i < s.bounds.size() ? prometheus_number(s.bounds[i]) : "+Inf";
    f.lines.push_back(name + "_bucket" + render_labels(labels, "le", le) + " " +
                      prometheus_number(double(s.buckets[i])));
  }
  f.lines.push_back(name + "_sum" + render_labels(labels) + " " + prometheus_number(s.sum));
  f.lines.push_back(name + "_count" + render_labels(labels) + " " +
                    prometheus_number(double(s.count)));
}

std::string prometheus_writer::text() const {
  std::string out;
  for (const auto& f : families_) {
    out += "# HELP " + f.name + " " + escape_help(f.help) + "\n";
    out += "# TYPE " + f.name + " " + f.type + "\n";
    for (const auto& l : f.lines) out += l + "\n";
  }
  return out;
}

// ---- parser
namespace {

bool name_start(char c) {
  return std::isalpha((unsigned char)c) || c == '_' || c == ':';
}
bool name_char(char c) {
  return name_start(c) || std::isdigit((unsigned char)c);
}

bool parse_value(const std::string& s, double& v) {
  if (s == "+Inf" || s == "Inf") return v = INFINITY, true;
  if (s == "-Inf") return v = -INFINITY, true;
  if (s == "NaN") return v = NAN, true;
  if (s.empty()) return false;
  char* end = nullptr;
  v = std::strtod(s.c_str(), &end);
  return end && *end == '\0';
}

}  // namespace

result<std::vector<prometheus_sample>> parse_prometheus_text(const std::string& text) {
  using R = result<std::vector<prometheus_sample>>;
  std::vector<prometheus_sample> out;
  std::map<std::string, std::string> types;
  std::set<std::string> helped;
  std::istringstream in(text);
  std::string line;
  int n = 0;
  auto fail = [&](const std::string& why) {
    return R::failure("line " + std::to_string(n) + ": " + why + ": '" + line + "'");
  };
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    if (line[0] == '#') {
      std::istringstream ls(line);
      std::string hash, kw, name;
      ls >> hash >> kw >> name;
      if (kw == "TYPE") {
        std::string type;
        ls >> type;
        static const std::set<std::string> known = {"counter", "gauge", "histogram", "summary",
                                                    "untyped"};
        if (!known.count(type)) return fail("unknown metric type");
        if (types.count(name)) return fail("second TYPE line for " + name);
        types[name] = type;
      } else if (kw == "HELP") {
        if (!helped.insert(name).second) return fail("second HELP line for " + name);
      }
      continue;
    }
    prometheus_sample s;
    std::size_t i = 0;
    if (!name_start(line[0])) return fail("bad metric name");
    while (i < line.size() && name_char(line[i])) ++i;
    s.name = line.substr(0, i);
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        const std::size_t k0 = i;
        while (i < line.size() && name_char(line[i])) ++i;
        const std::string key = line.substr(k0, i - k0);
        if (key.empty() || i + 1 >= line.size() || line[i] != '=' || line[i + 1] != '"')
          return fail("bad label");
        i += 2;
        std::string val;
        while (i < line.size() && line[i] != '"') {
          if (line[i] == '\\' && i + 1 < line.size()) {
            ++i;
            val += line[i] == 'n' ? '\n' : line[i];
          } else {
            val += line[i];
          }
          ++i;
        }
        if (i >= line.size()) return fail("unterminated label value");
        ++i;
        s.labels[key] = val;
        if (i < line.size() && line[i] == ',') ++i;
      }
      if (i >= line.size()) return fail("unterminated label set");
      ++i;
    }
    if (i >= line.size() || line[i] != ' ') return fail("no value");
    std::string rest = line.substr(i + 1);
    if (const auto sp = rest.find(' '); sp != std::string::npos) rest.resize(sp);  // timestamp
    if (!parse_value(rest, s.value)) return fail("bad value");
    std::string fam = s.name;
    if (!types.count(fam)) {
      for (const char* suf : {"_bucket", "_sum", "_count"}) {
        const std::string sfx = suf;
        if (fam.size() > sfx.size() && fam.compare(fam.size() - sfx.size(), sfx.size(), sfx) == 0 &&
            types.count(fam.substr(0, fam.size() - sfx.size()))) {
          fam = fam.substr(0, fam.size() - sfx.size());
          break;
        }
      }
    }
    if (!types.count(fam)) return fail("sample of an undeclared metric");
    if (types[fam] == "histogram" && s.name.size() > 7 &&
        s.name.compare(s.name.size() - 7, 7, "_bucket") == 0 && !s.labels.count("le"))
      return fail("histogram bucket without le");
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace hs
