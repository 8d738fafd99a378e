# A CLI failure test: runs PROGRAM with ARGS (a ;-list), after writing
# CONTENT (if given) to INPUT, and passes when the program exits non-zero,
# prints nothing on stdout, and prints one line on stderr matching EXPECT.
#
#   cmake -DPROGRAM=... "-DARGS=inspect;--model;x.gguf" -DEXPECT=regex
#         [-DINPUT=file -DCONTENT=text] -P expect_failure.cmake
if(DEFINED INPUT)
  file(WRITE "${INPUT}" "${CONTENT}")
endif()
execute_process(COMMAND "${PROGRAM}" ${ARGS}
  RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(status EQUAL 0)
  message(FATAL_ERROR "expected a non-zero exit, found 0; stdout: ${out}")
endif()
if(NOT out STREQUAL "")
  message(FATAL_ERROR "expected nothing on stdout, found: ${out}")
endif()
string(STRIP "${err}" line)
if(line MATCHES "\n")
  message(FATAL_ERROR "expected one line on stderr, found: ${err}")
endif()
if(NOT line MATCHES "${EXPECT}")
  message(FATAL_ERROR "stderr does not match '${EXPECT}': ${err}")
endif()
message(STATUS "exit ${status}: ${line}")
