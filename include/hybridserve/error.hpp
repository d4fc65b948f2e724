// Errors as values at the library boundary; exceptions only inside it.
#pragma once
#include <stdexcept>
#include <string>
#include <utility>
#include <variant>

namespace hs {

/// The one exception type thrown inside the library. Public entry points that can fail on
/// bad input catch it and hand it back as a `result<T>`; nothing in the library prints or exits.
class error : public std::runtime_error {
 public:
  explicit error(const std::string& what) : std::runtime_error(what) {}
};

/// Either a value or a message naming what is wrong (file, tensor, key...).
template <class T>
class result {
 public:
  result(T value) : v_(std::move(value)) {}  // NOLINT: implicit on purpose
  static result failure(std::string message) { return result(err_tag{}, std::move(message)); }

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  T& operator*() { return value(); }
  T* operator->() { return &value(); }
  const std::string& error() const { return std::get<1>(v_); }

 private:
  struct err_tag {};
  result(err_tag, std::string m) : v_(std::in_place_index<1>, std::move(m)) {}
  std::variant<T, std::string> v_;
};

/// Runs `f` and turns an hs::error (or std::exception) into a failed result.
template <class F>
auto capture(F&& f) -> result<decltype(f())> {
  try {
    return f();
  } catch (const std::exception& e) {
    return result<decltype(f())>::failure(e.what());
  }
}

}  // namespace hs
