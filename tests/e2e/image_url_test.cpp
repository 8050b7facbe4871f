// The image allow-list compares URLs component-wise after normalisation (issue 36): traversal with
// '..' or %2e%2e, encoded separators, user info and segment-boundary tricks do not pass a prefix,
// and the form fetched is the normalised one.
#include <gtest/gtest.h>

#include "server/image_url.h"

namespace dpserve {
namespace {

HttpUrl url(const std::string& s) {
  std::string why;
  auto u = parse_http_url(s, &why);
  EXPECT_TRUE(u.has_value()) << s << ": " << why;
  return u.value_or(HttpUrl{});
}

bool under(const std::string& u, const std::string& prefix) {
  const auto a = parse_http_url(u), p = parse_http_url(prefix);
  return a && p && url_under_prefix(*a, *p);
}

TEST(ImageUrl, ComponentsAreNormalised) {
  const HttpUrl u = url("HTTP://Images.Example.COM/a/./b/../c%20d/e?x=1#frag");
  EXPECT_EQ(u.scheme, "http");
  EXPECT_EQ(u.host, "images.example.com");
  EXPECT_EQ(u.port, 80);
  EXPECT_EQ(u.segments, (std::vector<std::string>{"a", "c d", "e"}));
  EXPECT_EQ(u.request_target(), "/a/c%20d/e?x=1");
  EXPECT_EQ(u.origin(), "http://images.example.com:80");
  EXPECT_EQ(url("https://h").port, 443);
  EXPECT_EQ(url("https://h:8443/").port, 8443);
  EXPECT_EQ(url("http://h:/x").port, 80);
  EXPECT_EQ(url("http://h").request_target(), "/");
  EXPECT_EQ(url("http://[::1]:9000/i.png").host, "[::1]");
  // Dot segments, also when encoded, and at the end (a directory is left).
  EXPECT_EQ(url("http://h/img/%2e%2e/secret").request_target(), "/secret");
  EXPECT_EQ(url("http://h/img/%2E./secret").request_target(), "/secret");
  EXPECT_EQ(url("http://h/a/b/..").request_target(), "/a/");
  EXPECT_EQ(url("http://h/a/.").request_target(), "/a/");
  EXPECT_EQ(url("http://h/../../x").request_target(), "/x");  // RFC 3986: no climbing above the root
  // Characters outside pchar are re-encoded; escapes of plain characters are decoded.
  EXPECT_EQ(url("http://h/%41b%7e/\xc3\xa9").request_target(), "/Ab~/%C3%A9");
  EXPECT_EQ(url("http://h/a%25b").request_target(), "/a%25b");
}

TEST(ImageUrl, AmbiguousUrlsAreRefused) {
  for (const char* bad : {"ftp://h/x", "file:///etc/passwd", "http:/h/x", "http://allowed.com@evil.com/img/x",
                          "http://h/img%2f..%2fsecret", "http://h/img%2F..%2Fsecret", "http://h/a%5c..%5csecret",
                          "http://h/a\\..\\secret", "http://h/a%00b", "http://h/a b", "http://h/a%zz", "http://h/a%4",
                          "http://h/img/..;/secret", "http://h/img/.;x/y", "http://h:0/x", "http://h:65536/x",
                          "http://h:8x/x", "http:///x", "http://h%2eevil/x", "http://[::1/x", "http://[zz]/x",
                          "http://h/x?a b"}) {
    std::string why;
    EXPECT_FALSE(parse_http_url(bad, &why).has_value()) << bad;
    EXPECT_FALSE(why.empty()) << bad;
  }
}

TEST(ImageUrl, PrefixesMatchOnSegmentBoundaries) {
  const std::string dir = "http://img.host:8000/img/";
  EXPECT_TRUE(under("http://img.host:8000/img/a.png", dir));
  EXPECT_TRUE(under("http://IMG.host:8000/img/sub/a.png", dir));
  EXPECT_TRUE(under("http://img.host:8000/other/../img/a.png", dir));
  EXPECT_TRUE(under("http://img.host:8000/img/./a.png", dir));
  EXPECT_FALSE(under("http://img.host:8000/img/../secret", dir));
  EXPECT_FALSE(under("http://img.host:8000/img/%2e%2e/secret", dir));
  EXPECT_FALSE(under("http://img.host:8000/img/sub/../../secret", dir));
  EXPECT_FALSE(under("http://img.host:8000/img", dir));      // the directory itself is not below it
  EXPECT_FALSE(under("http://img.host:8000/images/a.png", dir));
  EXPECT_FALSE(under("http://img.host:8001/img/a.png", dir));  // port
  EXPECT_FALSE(under("https://img.host:8000/img/a.png", dir)); // scheme
  EXPECT_FALSE(under("http://img.host.evil:8000/img/a.png", dir));
  // Without a trailing '/', the last segment must be whole.
  const std::string seg = "http://h/pub";
  EXPECT_TRUE(under("http://h/pub", seg));
  EXPECT_TRUE(under("http://h/pub/", seg));
  EXPECT_TRUE(under("http://h/pub/a.png", seg));
  EXPECT_FALSE(under("http://h/public/a.png", seg));
  EXPECT_FALSE(under("http://h/pub.png", seg));
  // Default ports are the same as explicit ones; the root covers the host.
  EXPECT_TRUE(under("http://h:80/a", "http://h/"));
  EXPECT_TRUE(under("https://h/a", "https://h:443/"));
  EXPECT_FALSE(under("http://h/a", "http://h/a?x=1"));
}

}  // namespace
}  // namespace dpserve
