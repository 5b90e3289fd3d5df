// Expected failures are values: Result<T> holds a T or an Error with a one-line message.
// Exceptions are reserved for component boundaries; main() maps errors to exit codes.
#pragma once

#include <string>
#include <tl/expected.hpp>

namespace cryptnono {

struct Error {
  std::string message;
};

template <class T>
using Result = tl::expected<T, Error>;

inline tl::unexpected<Error> fail(std::string message) { return tl::unexpected<Error>(Error{std::move(message)}); }

}  // namespace cryptnono
