"""Made-up values the tests share."""

TEST_API_KEY = "fedcba9876543210fedcba9876543210-us7"  # a made-up test key
TEST_LIST_ID = "f00dfeed42"
