#include "cryptnono/enforcer/config.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iterator>
#include <set>

#include <nlohmann/json.hpp>

namespace cryptnono::enforcer {

namespace {

// nlohmann's SAX callbacks do not say where a value is. The parser reads its input through
// this iterator, which records how many bytes have been consumed; at each callback that is
// the end of the token just read, which gives the value's line.
class CountingIterator {
 public:
  using iterator_category = std::input_iterator_tag;
  using value_type = char;
  using difference_type = std::ptrdiff_t;
  using pointer = const char*;
  using reference = const char&;

  CountingIterator(const char* p, const char* base, size_t* consumed) : p_(p), base_(base), consumed_(consumed) {}
  reference operator*() const { return *p_; }
  CountingIterator& operator++() {
    ++p_;
    if (consumed_ != nullptr) *consumed_ = static_cast<size_t>(p_ - base_);
    return *this;
  }
  CountingIterator operator++(int) {
    CountingIterator old = *this;
    ++*this;
    return old;
  }
  bool operator==(const CountingIterator& o) const { return p_ == o.p_; }
  bool operator!=(const CountingIterator& o) const { return p_ != o.p_; }

 private:
  const char* p_;
  const char* base_;
  size_t* consumed_;
};

using json = nlohmann::json;

class ConfigSax {
 public:
  ConfigSax(std::string_view text, const std::string& name, const size_t* consumed, ExecwhackerConfig& out)
      : text_(text), name_(name), consumed_(consumed), out_(out) {}

  const std::string& error() const { return error_; }

  bool null() { return scalar("null", 0); }
  bool boolean(bool) { return scalar("a boolean", 0); }
  bool number_integer(json::number_integer_t) { return scalar("a number", 1); }
  bool number_unsigned(json::number_unsigned_t) { return scalar("a number", 1); }
  // The lexer reads one byte past a number before it knows the number ended.
  bool number_float(json::number_float_t, const std::string&) { return scalar("a number", 1); }
  bool binary(json::binary_t&) { return scalar("binary data", 0); }

  bool string(std::string& value) {
    if (depth_ == 2 && list_ != nullptr) {
      size_t line = current_line(0);
      if (list_ == &out_.banned && value.empty())
        return entry_error(line, "empty string (it would match every command line)");
      if (list_ == &out_.allowed && value.empty())
        return entry_error(line, "empty pattern (it would spare every command line)");
      list_->push_back(ConfigEntry{std::move(value), name_, index_, line});
      ++index_;
      return true;
    }
    return scalar("a string", 0);
  }

  bool start_object(std::size_t) {
    if (depth_ == 0) {
      ++depth_;
      return true;
    }
    if (depth_ == 1 && in_known_key()) return value_error(current_line(0), "must be an array of strings, not an object");
    if (depth_ == 2 && list_ != nullptr) return entry_error(current_line(0), "must be a string, not an object");
    ++depth_;
    return true;
  }
  bool end_object() {
    --depth_;
    return true;
  }
  bool key(std::string& k) {
    if (depth_ != 1) return true;  // inside an unknown key's value
    list_ = nullptr;
    key_ = k;
    if (!seen_keys_.insert(k).second)
      out_.warnings.push_back(name_ + ":" + std::to_string(current_line(0)) + ": key \"" + k +
                              "\" appears more than once; the entries of every copy are used");
    if (k == kBannedKey) {
      pending_ = &out_.banned;
    } else if (k == kAllowedKey) {
      pending_ = &out_.allowed;
    } else {
      pending_ = nullptr;
      out_.warnings.push_back(name_ + ":" + std::to_string(current_line(0)) + ": unknown key \"" + k + "\" ignored");
    }
    return true;
  }
  bool start_array(std::size_t) {
    if (depth_ == 0) return top_level_error();
    if (depth_ == 1 && pending_ != nullptr) {
      list_ = pending_;
      index_ = 0;
    } else if (depth_ == 2 && list_ != nullptr) {
      return entry_error(current_line(0), "must be a string, not an array");
    }
    ++depth_;
    return true;
  }
  bool end_array() {
    --depth_;
    if (depth_ == 1) list_ = nullptr;
    return true;
  }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& ex) {
    // nlohmann's message is "[json.exception.parse_error.101] parse error at line L, column C:
    // <reason>"; its line/column come from the same offset. Keep the reason, compute the place.
    std::string what = ex.what();
    std::string reason = what;
    auto col = what.find("column ");
    auto colon = col == std::string::npos ? std::string::npos : what.find(": ", col);
    if (colon != std::string::npos) reason = what.substr(colon + 2);
    auto [line, column] = line_and_column(text_, position > 0 ? position - 1 : 0);
    error_ = name_ + ":" + std::to_string(line) + ":" + std::to_string(column) + ": invalid JSON: " + reason;
    return false;
  }

 private:
  bool in_known_key() const { return pending_ != nullptr; }

  // `lookahead`: bytes the lexer read past the end of the token.
  size_t current_line(size_t lookahead) {
    size_t end = *consumed_;
    size_t last = end > lookahead ? end - lookahead - 1 : 0;
    // Callbacks come in text order, so lines are counted incrementally (a config with
    // 100,000 strings must not be quadratic).
    if (last < line_pos_) {
      line_pos_ = 0;
      line_ = 1;
    }
    for (; line_pos_ < last && line_pos_ < text_.size(); ++line_pos_)
      if (text_[line_pos_] == '\n') ++line_;
    return line_;
  }

  bool scalar(const char* what, size_t lookahead) {
    if (depth_ == 0) return top_level_error();
    if (depth_ == 1 && pending_ != nullptr)
      return value_error(current_line(lookahead), std::string("must be an array of strings, not ") + what);
    if (depth_ == 2 && list_ != nullptr) return entry_error(current_line(lookahead), std::string("must be a string, not ") + what);
    return true;  // inside an unknown key: ignored
  }
  bool top_level_error() {
    error_ = name_ + ":" + std::to_string(current_line(0)) + ": the top level must be a JSON object";
    return false;
  }
  bool value_error(size_t line, const std::string& reason) {
    error_ = name_ + ":" + std::to_string(line) + ": " + key_ + ": " + reason;
    return false;
  }
  bool entry_error(size_t line, const std::string& reason) {
    error_ = name_ + ":" + std::to_string(line) + ": " + key_ + "[" + std::to_string(index_) + "]: " + reason;
    return false;
  }

  std::string_view text_;
  const std::string& name_;
  const size_t* consumed_;
  ExecwhackerConfig& out_;
  std::string error_;
  int depth_ = 0;
  std::string key_;
  std::vector<ConfigEntry>* pending_ = nullptr;  // list named by the current top-level key
  std::vector<ConfigEntry>* list_ = nullptr;     // list whose array we are inside
  size_t index_ = 0;
  size_t line_pos_ = 0;
  size_t line_ = 1;
  std::set<std::string> seen_keys_;
};

}  // namespace

std::pair<size_t, size_t> line_and_column(std::string_view text, size_t offset) {
  size_t line = 1;
  size_t line_start = 0;
  for (size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      line_start = i + 1;
    }
  }
  return {line, offset - line_start + 1};
}

Result<ExecwhackerConfig> parse_config(std::string_view text, const std::string& name) {
  ExecwhackerConfig out;
  out.files.push_back(name);
  size_t consumed = 0;
  ConfigSax sax(text, name, &consumed, out);
  CountingIterator first(text.data(), text.data(), &consumed);
  CountingIterator last(text.data() + text.size(), text.data(), nullptr);
  bool ok = json::sax_parse(first, last, &sax, json::input_format_t::json, /*strict=*/true,
                            /*ignore_comments=*/false);
  if (!ok) {
    if (sax.error().empty()) return fail(name + ": invalid configuration");
    return fail(sax.error());
  }
  return out;
}

void merge_config(ExecwhackerConfig& into, ExecwhackerConfig&& from) {
  for (auto& e : from.banned) into.banned.push_back(std::move(e));
  for (auto& e : from.allowed) into.allowed.push_back(std::move(e));
  for (auto& f : from.files) into.files.push_back(std::move(f));
  for (auto& w : from.warnings) into.warnings.push_back(std::move(w));
}

Result<std::string> read_text_file(const std::string& path) {
  constexpr size_t kMax = 64u << 20;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(path + ": cannot open: " + std::strerror(errno));
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return fail(path + ": cannot read: " + std::strerror(err));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > kMax) {
      ::close(fd);
      return fail(path + ": larger than 64 MiB");
    }
  }
  ::close(fd);
  return out;
}

Result<ExecwhackerConfig> load_config_files(const std::vector<std::string>& paths, std::vector<std::string>* contents) {
  ExecwhackerConfig merged;
  if (contents != nullptr) contents->clear();
  for (const auto& path : paths) {
    auto text = read_text_file(path);
    if (!text) return tl::unexpected(text.error());
    auto parsed = parse_config(*text, path);
    if (!parsed) return tl::unexpected(parsed.error());
    merge_config(merged, std::move(*parsed));
    if (contents != nullptr) contents->push_back(std::move(*text));
  }
  return merged;
}

}  // namespace cryptnono::enforcer
