#pragma once
#define SB_TEST_DATA "tests/data"
