# Writes a fuzzer's seed corpus: empties CORPUS, then runs
# `PYTHON SCRIPT CORPUS` (see elastic_add_fuzzer in CMakeLists.txt).
file(REMOVE_RECURSE "${CORPUS}")
file(MAKE_DIRECTORY "${CORPUS}")
execute_process(COMMAND "${PYTHON}" "${SCRIPT}" "${CORPUS}" RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "seed script ${SCRIPT} failed: ${result}")
endif()
