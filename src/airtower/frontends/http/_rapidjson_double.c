/* The C accelerator of rapidjson_double.py: doubles written as Triton's JSON writer (RapidJSON's
 * Writer::Double: Grisu2 digits, Prettify layout, NaN/Infinity) writes them, for a whole array at
 * once. rapidjson_double.py holds the algorithm's description and the reference implementation
 * (pure integer arithmetic); this file follows it step for step and the tests hold the two equal.
 * The table of cached powers of ten comes from the Python module (set_powers), so both use one. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define CACHED_COUNT 87
#define HIDDEN_BIT ((uint64_t)1 << 52)
#define SIGNIFICAND_MASK (HIDDEN_BIT - 1)
#define MAX_TEXT 32 /* "-1.2345678901234567e-308" is 24 characters */

static uint64_t cached_f[CACHED_COUNT];
static int cached_e[CACHED_COUNT];
static int powers_set = 0;

static const uint32_t POW10[] = {1,      10,      100,      1000,      10000,
                                 100000, 1000000, 10000000, 100000000, 1000000000};

/* High 64 bits of the 128-bit product, rounded at bit 63 (RapidJSON's __int128 path). */
static inline uint64_t multiply(uint64_t a, uint64_t b) {
    unsigned __int128 product = (unsigned __int128)a * b;
    uint64_t high = (uint64_t)(product >> 64);
    return high + (((uint64_t)product >> 63) & 1);
}

static inline int bit_length(uint64_t value) { return value ? 64 - __builtin_clzll(value) : 0; }

static int decimal_digits(uint32_t value) {
    int count = 1;
    while (count < 10 && value >= POW10[count]) {
        count++;
    }
    return count;
}

/* GrisuRound: move the last digit towards the value while that stays inside the interval. */
static void grisu_round(char *digits, int length, uint64_t delta, uint64_t rest, uint64_t ten_kappa,
                        uint64_t wp_w) {
    while (rest < wp_w && delta - rest >= ten_kappa &&
           (rest + ten_kappa < wp_w || wp_w - rest > rest + ten_kappa - wp_w)) {
        digits[length - 1]--;
        rest += ten_kappa;
    }
}

/* Grisu2 of a positive, finite, non-zero value: its digits (no leading zeros) and K, with
 * value ~ digits * 10^K. */
static int grisu2(double value, char *digits, int *k_out) {
    uint64_t bits;
    memcpy(&bits, &value, sizeof bits);
    int biased = (int)(bits >> 52) & 0x7FF;
    uint64_t f = bits & SIGNIFICAND_MASK;
    int e;
    if (biased) {
        f |= HIDDEN_BIT;
        e = biased - 1075;
    } else {
        e = -1074;
    }
    /* The boundaries m+ and m-, normalized to m+'s exponent. */
    uint64_t plus_f = (f << 1) + 1;
    int plus_e = e - 1;
    while (!(plus_f & (HIDDEN_BIT << 1))) {
        plus_f <<= 1;
        plus_e--;
    }
    plus_f <<= 10;
    plus_e -= 10;
    uint64_t minus_f;
    int minus_e;
    if (f == HIDDEN_BIT) {
        minus_f = (f << 2) - 1;
        minus_e = e - 2;
    } else {
        minus_f = (f << 1) - 1;
        minus_e = e - 1;
    }
    minus_f <<= (minus_e - plus_e);
    /* The cached power of ten that brings m+'s exponent into [-60, -32]. */
    double dk = (-61 - plus_e) * 0.30102999566398114 + 347;
    int k = (int)dk;
    if (dk - k > 0.0) {
        k++;
    }
    int index = (k >> 3) + 1;
    int big_k = -(-348 + index * 8);
    uint64_t c_f = cached_f[index];
    int c_e = cached_e[index];
    int shift_w = 64 - bit_length(f);
    uint64_t w_f = multiply(f << shift_w, c_f);
    uint64_t mp_f = multiply(plus_f, c_f) - 1;
    int mp_e = plus_e + c_e + 64;
    uint64_t wm_f = multiply(minus_f, c_f) + 1;
    uint64_t delta = mp_f - wm_f;

    /* DigitGen. */
    int shift = -mp_e;
    uint64_t one_f = (uint64_t)1 << shift;
    uint64_t wp_w = mp_f - w_f;
    uint32_t p1 = (uint32_t)(mp_f >> shift);
    uint64_t p2 = mp_f & (one_f - 1);
    int kappa = decimal_digits(p1);
    int length = 0;
    while (kappa > 0) {
        uint32_t divisor = POW10[kappa - 1];
        uint32_t digit = p1 / divisor;
        p1 %= divisor;
        if (digit || length) {
            digits[length++] = (char)('0' + digit);
        }
        kappa--;
        uint64_t rest = ((uint64_t)p1 << shift) + p2;
        if (rest <= delta) {
            *k_out = big_k + kappa;
            grisu_round(digits, length, delta, rest, (uint64_t)POW10[kappa] << shift, wp_w);
            return length;
        }
    }
    for (;;) {
        p2 *= 10;
        delta *= 10;
        char digit = (char)(p2 >> shift);
        if (digit || length) {
            digits[length++] = (char)('0' + digit);
        }
        p2 &= one_f - 1;
        kappa--;
        if (p2 < delta) {
            *k_out = big_k + kappa;
            int j = -kappa;
            /* The RapidJSON Triton links scales the distance to w only for fewer than 9 extra
             * digits (else 0: no rounding). */
            grisu_round(digits, length, delta, p2, one_f, j < 9 ? wp_w * POW10[j] : 0);
            return length;
        }
    }
}

/* RapidJSON's Prettify of digits * 10^k (maxDecimalPlaces 324), after the sign. */
static char *prettify(char *out, const char *digits, int length, int k) {
    int kk = length + k; /* 10^(kk-1) <= value < 10^kk */
    if (k >= 0 && kk <= 21) {
        memcpy(out, digits, length);
        out += length;
        memset(out, '0', k);
        out += k;
        *out++ = '.';
        *out++ = '0';
    } else if (0 < kk && kk <= 21) {
        memcpy(out, digits, kk);
        out += kk;
        *out++ = '.';
        memcpy(out, digits + kk, length - kk);
        out += length - kk;
    } else if (-6 < kk && kk <= 0) {
        *out++ = '0';
        *out++ = '.';
        memset(out, '0', -kk);
        out += -kk;
        memcpy(out, digits, length);
        out += length;
    } else if (kk < -324) {
        memcpy(out, "0.0", 3);
        out += 3;
    } else {
        *out++ = digits[0];
        if (length > 1) {
            *out++ = '.';
            memcpy(out, digits + 1, length - 1);
            out += length - 1;
        }
        *out++ = 'e';
        out += sprintf(out, "%d", kk - 1);
    }
    return out;
}

/* One value as Writer::Double writes it (with kWriteNanAndInfFlag); returns the end of the text. */
static char *write_double(char *out, double value) {
    if (isnan(value)) {
        memcpy(out, "NaN", 3);
        return out + 3;
    }
    if (isinf(value)) {
        if (value > 0) {
            memcpy(out, "Infinity", 8);
            return out + 8;
        }
        memcpy(out, "-Infinity", 9);
        return out + 9;
    }
    if (value == 0) {
        if (signbit(value)) {
            memcpy(out, "-0.0", 4);
            return out + 4;
        }
        memcpy(out, "0.0", 3);
        return out + 3;
    }
    if (value < 0) {
        *out++ = '-';
        value = -value;
    }
    if (value < 9007199254740992.0 && value == floor(value)) { /* below 2^53: the integer's digits */
        out += sprintf(out, "%llu", (unsigned long long)value);
        *out++ = '.';
        *out++ = '0';
        return out;
    }
    char digits[32];
    int k = 0;
    int length = grisu2(value, digits, &k);
    return prettify(out, digits, length, k);
}

static PyObject *set_powers(PyObject *self, PyObject *args) {
    PyObject *significands, *exponents;
    if (!PyArg_ParseTuple(args, "OO", &significands, &exponents)) {
        return NULL;
    }
    if (!PyList_Check(significands) || !PyList_Check(exponents) || PyList_GET_SIZE(significands) != CACHED_COUNT ||
        PyList_GET_SIZE(exponents) != CACHED_COUNT) {
        PyErr_SetString(PyExc_ValueError, "set_powers: two lists of 87 cached powers expected");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < CACHED_COUNT; i++) {
        unsigned long long significand = PyLong_AsUnsignedLongLong(PyList_GET_ITEM(significands, i));
        long exponent = PyLong_AsLong(PyList_GET_ITEM(exponents, i));
        if (PyErr_Occurred()) {
            return NULL;
        }
        cached_f[i] = significand;
        cached_e[i] = (int)exponent;
    }
    powers_set = 1;
    Py_RETURN_NONE;
}

static int check_ready(void) {
    if (!powers_set) {
        PyErr_SetString(PyExc_RuntimeError, "set_powers was not called");
        return 0;
    }
    return 1;
}

static PyObject *double_text(PyObject *self, PyObject *arg) {
    double value = PyFloat_AsDouble(arg);
    if (value == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    if (!check_ready()) {
        return NULL;
    }
    char text[MAX_TEXT];
    char *end = write_double(text, value);
    return PyUnicode_FromStringAndSize(text, end - text);
}

/* array_json(buffer): a JSON array of a C-contiguous buffer of doubles ('d'). */
static PyObject *array_json(PyObject *self, PyObject *arg) {
    if (!check_ready()) {
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) {
        return NULL;
    }
    if (view.itemsize != 8 || view.format == NULL || strcmp(view.format, "d") != 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_TypeError, "array_json: a contiguous buffer of float64 expected");
        return NULL;
    }
    Py_ssize_t count = view.len / 8;
    char *text = PyMem_Malloc((size_t)count * (MAX_TEXT + 1) + 2);
    if (text == NULL) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    const double *values = (const double *)view.buf;
    char *out = text;
    *out++ = '[';
    for (Py_ssize_t i = 0; i < count; i++) {
        if (i) {
            *out++ = ',';
        }
        out = write_double(out, values[i]);
    }
    *out++ = ']';
    PyBuffer_Release(&view);
    PyObject *result = PyUnicode_FromStringAndSize(text, out - text);
    PyMem_Free(text);
    return result;
}

static PyMethodDef methods[] = {
    {"set_powers", set_powers, METH_VARARGS, "Grisu's cached powers of ten: 87 significands and exponents."},
    {"double_text", double_text, METH_O, "One double as Triton's JSON writer writes it."},
    {"array_json", array_json, METH_O, "A JSON array of a contiguous float64 buffer, as Triton writes it."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_rapidjson_double", NULL, -1, methods};

PyMODINIT_FUNC PyInit__rapidjson_double(void) { return PyModule_Create(&module); }
