// multipart/form-data as the Files API reads uploads (RFC 7578): bodies framed as browsers' FormData,
// curl -F and the OpenAI SDKs write them, written out by hand here.
#include "server/multipart.h"

#include <gtest/gtest.h>

#include "server/openai_error.h"

namespace dpserve {
namespace {

TEST(Multipart, FieldsAndAFileAsClientsFrameThem) {
  const std::string body =
      "--XyZ\r\n"
      "Content-Disposition: form-data; name=\"purpose\"\r\n"
      "\r\n"
      "batch\r\n"
      "--XyZ\r\n"
      "Content-Disposition: form-data; name=\"file\"; filename=\"a;b \\\"c\\\".jsonl\"\r\n"
      "Content-Type: application/octet-stream\r\n"
      "\r\n"
      "line 1\r\nline 2\n\r\n"
      "--XyZ--\r\n";
  const auto parts = parse_multipart("multipart/form-data; boundary=XyZ", body);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0].name, "purpose");
  EXPECT_EQ(parts[0].filename, "");
  EXPECT_EQ(parts[0].body, "batch");
  EXPECT_EQ(parts[1].name, "file");
  EXPECT_EQ(parts[1].filename, "a;b \"c\".jsonl");  // a quoted ';' and escaped quotes
  EXPECT_EQ(parts[1].content_type, "application/octet-stream");
  EXPECT_EQ(parts[1].body, "line 1\r\nline 2\n");  // CRLF inside the content is content
  // The boundary quoted, the type in other case, a preamble before the first boundary.
  const auto q = parse_multipart("Multipart/Form-Data; boundary=\"XyZ\"", "preamble\r\n" + body);
  EXPECT_EQ(q.size(), 2u);
}

TEST(Multipart, MalformedBodiesAre400s) {
  auto fails = [](const std::string& type, const std::string& body) {
    try {
      parse_multipart(type, body);
    } catch (const ApiError& e) {
      return e.status() == 400;
    }
    return false;
  };
  const std::string ok = "--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1\r\n--b--\r\n";
  EXPECT_FALSE(fails("multipart/form-data; boundary=b", ok));
  EXPECT_TRUE(fails("application/json", ok));                 // not multipart
  EXPECT_TRUE(fails("multipart/form-data", ok));              // no boundary
  EXPECT_TRUE(fails("multipart/form-data; boundary=c", ok));  // not framed by it
  EXPECT_TRUE(fails("multipart/form-data; boundary=b", "--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1"));
  EXPECT_TRUE(fails("multipart/form-data; boundary=b", "--b\r\nContent-Disposition: form-data\r\n\r\n1\r\n--b--"));
  EXPECT_TRUE(fails("multipart/form-data; boundary=b", "--b\r\nno colon\r\n\r\n1\r\n--b--"));
  EXPECT_TRUE(fails("multipart/form-data; boundary=b",
                    "--b\r\nContent-Disposition: form-data; name=\"x\r\n\r\n1\r\n--b--"));  // unterminated quote
}

}  // namespace
}  // namespace dpserve
