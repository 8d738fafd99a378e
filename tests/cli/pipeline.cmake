# The conversion and search pipeline end to end on a tiny model: writes the
# model (WRITER), then runs `elastic` (PROGRAM) convert (also with the linear
# maps fitted in turns, which must write the same files), score, latency and
# search on it with small windows, and a perplexity at a searched budget;
# fails on any non-zero exit or a missing output, and unless a budget no
# configuration meets fails naming the smallest reachable latency.
#
#   cmake -DPROGRAM=elastic -DWRITER=elastic_write_tiny_model -DWORK=dir
#         -DCALIBRATION=a.txt -DVALIDATION=b.txt -DEVALUATION=c.txt -P pipeline.cmake
file(REMOVE_RECURSE "${WORK}")
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "${ARGN}\nexited ${status}\nstdout: ${out}\nstderr: ${err}")
  endif()
  set(output "${out}${err}" PARENT_SCOPE)
endfunction()
run("${WRITER}" "${WORK}/tiny")
run("${PROGRAM}" convert -m "${WORK}/tiny" --calibration "${CALIBRATION}" --validation "${VALIDATION}"
    --validation-windows 2 --ctx 64 --tokens 1024 --fit-tokens 512 -o "${WORK}/elastic" --threads 2)
# Fitting the maps in turns (a pass over the fit tokens per half) writes the
# same checkpoint, byte for byte.
run("${PROGRAM}" convert -m "${WORK}/tiny" --calibration "${CALIBRATION}" --validation "${VALIDATION}"
    --validation-windows 2 --ctx 64 --tokens 1024 --fit-tokens 512 -o "${WORK}/elastic_in_turns" --threads 2
    --fit-memory 1KiB)
if(NOT output MATCHES "fitting in [0-9]+ turns")
  message(FATAL_ERROR "convert --fit-memory 1KiB did not fit in turns: ${output}")
endif()
foreach(file config.json model.safetensors)
  file(SHA256 "${WORK}/elastic/${file}" at_once)
  file(SHA256 "${WORK}/elastic_in_turns/${file}" in_turns)
  if(NOT at_once STREQUAL in_turns)
    message(FATAL_ERROR "convert wrote a different ${file} when fitting in turns")
  endif()
endforeach()
run("${PROGRAM}" score -m "${WORK}/elastic" --calibration "${CALIBRATION}" --windows 2 --ctx 64
    --threads 2)
run("${PROGRAM}" latency -m "${WORK}/elastic" --ctx 32 --steps 4 -p 32 -r 1 --threads 2)
run("${PROGRAM}" search -m "${WORK}/elastic" --evaluation "${EVALUATION}" --latency 0.9 --eval-windows 2 --ctx 64 --refine 2
    -r 1 --threads 2)
if(NOT output MATCHES "search: the selections measured [0-9.]+ times their predicted fraction")
  message(FATAL_ERROR "search --refine 2 did not estimate the table's bias: ${output}")
endif()
foreach(file config.json model.safetensors tokenizer.json block_library.json latency_table.json budgets.json
             pareto.svg pareto.md)
  if(NOT EXISTS "${WORK}/elastic/${file}")
    message(FATAL_ERROR "the pipeline did not write ${file}")
  endif()
endforeach()
run("${PROGRAM}" perplexity -m "${WORK}/elastic" --budget 0.9 -f "${EVALUATION}" --ctx 64 --threads 2)
if(NOT output MATCHES "budget 0.9: the entry for fraction 0.9" OR NOT output MATCHES "perplexity [0-9.]+ over")
  message(FATAL_ERROR "perplexity at budget 0.9 did not report its entry and perplexity: ${output}")
endif()
# Measuring on a GPU where there is none (or in a build without CUDA) fails
# before the search, saying so.
execute_process(COMMAND ${CMAKE_COMMAND} -E env CUDA_VISIBLE_DEVICES=-1 "${PROGRAM}" search -m "${WORK}/elastic"
                --evaluation "${EVALUATION}" --device cuda --output-dir "${WORK}/no_device"
  RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(status EQUAL 0 OR NOT err MATCHES "elastic: --device cuda: .*use --device cpu" OR EXISTS "${WORK}/no_device")
  message(FATAL_ERROR "search --device cuda without a device should fail before writing anything; exit ${status}: ${err}")
endif()
# A budget no configuration meets: one line naming the smallest reachable latency.
execute_process(COMMAND "${PROGRAM}" search -m "${WORK}/elastic" --evaluation "${EVALUATION}" --latency 0.02
                --sweep-from 1 --eval-windows 1 --ctx 64 -r 1 --threads 2 --output-dir "${WORK}/unreachable"
  RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(status EQUAL 0 OR NOT err MATCHES "elastic: .*the smallest reachable latency is")
  message(FATAL_ERROR "an unreachable budget should fail naming the smallest reachable latency; exit ${status}: ${err}")
endif()
if(EXISTS "${WORK}/unreachable/budgets.json")
  message(FATAL_ERROR "an unreachable budget wrote a budget table")
endif()
message(STATUS "pipeline: ${output}")
