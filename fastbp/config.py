"""The tunables: every number that decides how the kernels split work, in one table (stumpy keeps its defaults in a
``config.py`` too). Each is a judgement or a measurement on the development machine, said beside it; the kernels
read them as compile-time constants, so a change is a change of source (every cached kernel recompiles).
"""

# ---- the generic kernels (fastbp.kernels.generic) -----------------------------------------------------------------

# A layer's products go to BLAS from this many multiply-adds (rows x n_in x n_out), with 2 or more rows and no
# dimension under BLAS_MIN_WIDTH; below, the hand loops win (measured: 8-64 and 64-64 layers cross over near 8k for
# batches of 4 to 32; a single row's outer-product gradient is faster by hand at every size).
BLAS_MIN_WORK = 1 << 13
BLAS_MIN_WIDTH = 4
# The parallel twins split rows between threads, in chunks of CHUNK_ROWS; a network uses them only for batches with
# PARALLEL_MIN_WORK multiply-adds in some layer and no layer on BLAS, as BLAS runs its own threads (and OpenMP's
# spinning workers would starve them).
PARALLEL_MIN_WORK = 1 << 16
CHUNK_ROWS = 64

# ---- the kernels compiled for one network (fastbp.kernels.compiled, codegen_signature) --------------------------

# Networks whose every layer has at most this many weights run compiled; larger layers belong to BLAS, which the
# generic kernels call. A judgement from the benchmark cases (mnist's 784x256 layer gains from BLAS, simplechains'
# layers from compiling), not a crossover measured per layer shape.
MAX_LAYER_WEIGHTS = 128 * 128
# Inputs summed per pass over a population block's members, or over a tile's rows where the tile path's sums (a
# layer's, the deltas') or gradient run over fewer than WIDE lane blocks of inputs: their weights sit in registers.
CHUNK = 8
# The tile path holds UNITS units times LANE_BYTES of rows in registers per pass (16 float32 or 8 float64 rows:
# two AVX2 vectors, or one AVX-512); measured on a 64 x 64 layer of 32 float32 rows (Xeon, AVX-512), forward:
# 4 x 16 2.7 us, 2 x 16 3.6 us, 4 x 8 3.9 us, against 4.7 us for CHUNK inputs per pass over the rows.
LANE_BYTES = 64
UNITS = 4
# Sums over this many lane blocks of inputs or more (64 float32, 32 float64) are register-blocked: a layer's, the
# deltas' and the gradient's, which reads its input row by row: a copy narrower layers do not repay (4-32-16-4 on
# 10,000 rows: its gradient took 987 us with every layer register-blocked, 866 us before; policy-batch's 64-input
# layers 1.4x faster).
WIDE = 4
# The single-row path sums ROW_UNITS units per pass over their inputs (measured on 16-64-64-64-64-4 float64, one SGD
# step from @njit: 6.8 us one unit per pass, 6.0 with 4, 6.4 with 2 or 8).
ROW_UNITS = 4
GROUPS = 8  # tiles are dealt to this many groups at most, independent of the thread count
TILE_BYTES = 512  # a tile's rows: 64 float64 or 128 float32 per unit (the tile of 4-32-16-4 is then ~30-60 KB)

# ---- populations (fastbp.kernels.population, fastbp.population) --------------------------------------------------

LANES = 256  # members per block: a block's rows stay in cache; blocks go to threads
# A population predicts on threads from two blocks; a train step gains from a second thread only for large
# populations (measured: 4096 members of 4-16-2 15% faster, 1024 members 30% slower, as the members' parameters and
# gradients then move between the cores' caches).
PARALLEL_PREDICT_MEMBERS = LANES
PARALLEL_TRAIN_MEMBERS = 8 * LANES

# ---- the background build (fastbp.dispatch) -----------------------------------------------------------------------

BUILD_TIMEOUT = 900  # seconds a background build may take before it is ended (a large network compiles in ~1 min)
# At most this many background builds compile at once on the machine, across processes (None: half the cores, at
# least 1; FASTBP_BUILDS overrides): each is a compiler process of ~300 MB resident, and a sweep of 100 new
# architectures must not start 100 of them.
BUILD_PROCESSES = None

# ---- the plan (fastbp.plan): timing the candidate kernels in the background build ------------------------------

PLAN_ROUNDS = 4  # alternating rounds per batch class; the median decides
PLAN_BLOCK_SECONDS = 0.03  # calls per round: about this long (one call at least), after one call not timed
# After a candidate that calls BLAS, the next round waits this long: OpenBLAS's threads spin for 2^28 cycles after a
# call (its THREAD_TIMEOUT, ~0.1 s here), and a twin timed beside them ran 35x slower (measured: 7.5 ms per step of
# 4096 rows of 4-32-16-4 within 50 ms of a BLAS call, 0.22 ms from 0.1 s on).
PLAN_BLAS_SETTLE_SECONDS = 0.15
PLAN_SETTLE_SECONDS = 0.02  # and BLAS waits this long after a twin: OpenMP's idle threads spin for milliseconds
# A parallel twin is chosen only if it beats the best serial kernel by this factor: its threads' wake-up varies from
# process to process (a twin timed 1.2x faster in the build ran 1.7x slower in another process of the grid here).
PLAN_TWIN_MARGIN = 1.25
PLAN_MAX_WORK = 1 << 28  # batch classes whose step has more multiply-adds are not timed (they follow a smaller one)

# ---- the choice checked where it runs (fastbp.observe) -----------------------------------------------------------

OBSERVE_MIN_SECONDS = 20e-6  # classes whose step the plan puts at least this long are watched: every call timed
OBSERVE_SHORT_CHECKS = 3  # shorter ones are checked until two checks agree, this many at most, then left alone
OBSERVE_RATIO = 2.0  # the candidates observed: the plan's within this factor of its fastest (and its fastest serial)
OBSERVE_CANDIDATES = 3  # at most this many
OBSERVE_BLOCK_SECONDS = 0.002  # a block's calls last about this long,
OBSERVE_BLOCK_CALLS = 5  # and are this many at least, so a block's median passes over a wake-up or two
OBSERVE_ROUNDS = 3  # blocks per candidate in a check, in alternating rounds; the median of their calls decides
OBSERVE_RACE = 1.3  # after a round, candidates slower than this times the fastest so far drop out of the check
OBSERVE_DRIFT = 1.5  # blocks of the chosen candidate whose median exceeds its own by this factor count as drift
OBSERVE_BUDGET = 0.01  # checks cost at most this fraction of the observed calls' time (timing another 1% at most)
OBSERVE_INTERVAL_SECONDS = 1.0  # and are at least this many seconds of calls apart, unless a drift has cost more
OBSERVE_CONFIRM_BLOCKS = 10  # a check that changes the choice is checked again after this many blocks
