"""Builders shared by the test packages; fixtures stay in tests/conftest.py, which imports from here.

candles   synthetic candles and candle-store rows        data      ../shared/data, or a skip saying why
clock     an injectable clock and a recording sleep      exchange  symbol filters and symbol rows
http      AUTH, the app and its context, app jobs        install   a trained offline install to copy
settings  make_settings, load_settings, API_KEY          world     the Mother AI's unit-test world
"""
