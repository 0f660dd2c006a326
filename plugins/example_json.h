/* example_json.h: the little JSON reading the example plugins need
 * (hello_policy, hello_matcher). Header-only, static functions, C99.
 *
 * The host hands plugins well-formed JSON text (plugins/koukan_plugin.h), so
 * this is a reader for valid input that fails safe (returns NULL / 0) on
 * anything unexpected; it is not a validator. A real plugin would use a JSON
 * library.
 */
#ifndef KOUKAN_EXAMPLE_JSON_H
#define KOUKAN_EXAMPLE_JSON_H

#include <ctype.h>
#include <stddef.h>
#include <string.h>

static inline const char* ex_json_ws(const char* p) {
  while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') ++p;
  return p;
}

/* p at '"': returns the position after the closing quote, NULL if unterminated. */
static inline const char* ex_json_skip_string(const char* p) {
  for (++p; *p; ++p) {
    if (*p == '\\') {
      if (!*++p) return NULL;
    } else if (*p == '"') {
      return p + 1;
    }
  }
  return NULL;
}

/* Skips one value; returns the position after it, NULL on bad input. */
static inline const char* ex_json_skip_value(const char* p) {
  p = ex_json_ws(p);
  if (*p == '"') return ex_json_skip_string(p);
  if (*p == '{' || *p == '[') {
    int depth = 0;
    while (*p) {
      if (*p == '"') {
        p = ex_json_skip_string(p);
        if (!p) return NULL;
        continue;
      }
      if (*p == '{' || *p == '[') ++depth;
      if (*p == '}' || *p == ']') {
        if (--depth == 0) return p + 1;
      }
      ++p;
    }
    return NULL;
  }
  /* number, true, false, null */
  const char* start = p;
  while (*p && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\t' && *p != '\n' &&
         *p != '\r')
    ++p;
  return p == start ? NULL : p;
}

/* Compares the JSON string at p (at '"') with `key`, escapes compared
 * literally (keys we look for have none). */
static inline int ex_json_string_is(const char* p, const char* key) {
  size_t n = strlen(key);
  return p[0] == '"' && strncmp(p + 1, key, n) == 0 && p[1 + n] == '"';
}

/* obj at '{' (after whitespace): the value of member `key`, NULL if absent. */
static inline const char* ex_json_member(const char* obj, const char* key) {
  const char* p = ex_json_ws(obj);
  if (*p != '{') return NULL;
  p = ex_json_ws(p + 1);
  if (*p == '}') return NULL;
  for (;;) {
    if (*p != '"') return NULL;
    int hit = ex_json_string_is(p, key);
    p = ex_json_skip_string(p);
    if (!p) return NULL;
    p = ex_json_ws(p);
    if (*p != ':') return NULL;
    p = ex_json_ws(p + 1);
    if (hit) return p;
    p = ex_json_skip_value(p);
    if (!p) return NULL;
    p = ex_json_ws(p);
    if (*p != ',') return NULL; /* '}' or bad input: not found */
    p = ex_json_ws(p + 1);
  }
}

/* arr at '[': element `index`, NULL if out of range. */
static inline const char* ex_json_element(const char* arr, size_t index) {
  const char* p = ex_json_ws(arr);
  if (*p != '[') return NULL;
  p = ex_json_ws(p + 1);
  if (*p == ']') return NULL;
  for (size_t i = 0;; ++i) {
    if (i == index) return p;
    p = ex_json_skip_value(p);
    if (!p) return NULL;
    p = ex_json_ws(p);
    if (*p != ',') return NULL;
    p = ex_json_ws(p + 1);
  }
}

/* Copies the JSON string at p into buf (size n, NUL-terminated). Simple
 * escapes are decoded; \uXXXX is not (returns 0, as does a too-long string
 * or a non-string). Returns 1 on success. */
static inline int ex_json_get_string(const char* p, char* buf, size_t n) {
  if (!p || *p != '"' || n == 0) return 0;
  size_t len = 0;
  for (++p; *p != '"'; ++p) {
    char c = *p;
    if (!c) return 0;
    if (c == '\\') {
      switch (*++p) {
        case '"': c = '"'; break;
        case '\\': c = '\\'; break;
        case '/': c = '/'; break;
        case 'b': c = '\b'; break;
        case 'f': c = '\f'; break;
        case 'n': c = '\n'; break;
        case 'r': c = '\r'; break;
        case 't': c = '\t'; break;
        default: return 0;
      }
    }
    if (len + 1 >= n) return 0;
    buf[len++] = c;
  }
  buf[len] = '\0';
  return 1;
}

/* The domain of an address: after the last '@'; NULL if there is none
 * (e.g. the null reverse-path ""). */
static inline const char* ex_address_domain(const char* address) {
  const char* at = strrchr(address, '@');
  return at && at[1] ? at + 1 : NULL;
}

/* Domains compare without regard to ASCII case. */
static inline int ex_domain_equal(const char* a, const char* b) {
  for (; *a && *b; ++a, ++b) {
    if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return 0;
  }
  return *a == *b;
}

#endif /* KOUKAN_EXAMPLE_JSON_H */
