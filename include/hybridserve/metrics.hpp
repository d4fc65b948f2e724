// Prometheus text exposition (format 0.0.4): thread-safe histograms and counters, a writer that
// groups samples by family with their HELP and TYPE lines, and a small parser for tests.
#pragma once
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "hybridserve/error.hpp"

namespace hs {

using metric_labels = std::vector<std::pair<std::string, std::string>>;

/// Cumulative histogram with fixed upper bounds (the +Inf bucket is implicit). Thread-safe.
class histogram {
 public:
  explicit histogram(std::vector<double> upper_bounds);
  void observe(double v);

  struct snapshot {
    std::vector<double> bounds;     // ascending, finite
    std::vector<uint64_t> buckets;  // cumulative counts, bounds.size() + 1 (the last is +Inf)
    double sum = 0;
    uint64_t count = 0;
  };
  snapshot snap() const;

 private:
  mutable std::mutex m_;
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative
  double sum_ = 0;
  uint64_t count_ = 0;
};

/// `count` bounds: start, start*factor, ...
std::vector<double> exponential_buckets(double start, double factor, int count);

/// A counter per label set (e.g. per endpoint and status). Thread-safe.
class counter_family {
 public:
  void add(const metric_labels& labels, double v = 1);
  std::vector<std::pair<metric_labels, double>> values() const;

 private:
  mutable std::mutex m_;
  std::map<metric_labels, double> values_;
};

/// Builds an exposition. Samples of one family may be added in any order; they come out
/// together under one HELP and one TYPE line, families in the order first seen. Counter names
/// end in `_total`; units are base units (seconds, bytes).
class prometheus_writer {
 public:
  void counter(const std::string& name, const std::string& help, double value,
               const metric_labels& labels = {});
  void gauge(const std::string& name, const std::string& help, double value,
             const metric_labels& labels = {});
  void histogram(const std::string& name, const std::string& help, const histogram::snapshot& s,
                 const metric_labels& labels = {});
  std::string text() const;

 private:
  struct family {
    std::string name, help, type;
    std::vector<std::string> lines;
  };
  family& get(const std::string& name, const std::string& help, const char* type);
  std::vector<family> families_;
};

/// A sample value as Prometheus writes it: shortest round-trip form, +Inf, -Inf, NaN.
std::string prometheus_number(double v);
/// Escapes a label value (backslash, double quote, newline).
std::string prometheus_escape(const std::string& s);

/// One parsed sample line.
struct prometheus_sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

/// Parses text exposition strictly enough for tests: every sample belongs to a family declared
/// by a TYPE line before it (histograms: _bucket/_sum/_count), names and labels are well-formed,
/// values are numbers. Errors name the line.
result<std::vector<prometheus_sample>> parse_prometheus_text(const std::string& text);

}  // namespace hs
