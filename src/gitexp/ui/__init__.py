"""The local web view of runs (`git exp ui`) and its frozen copy (`git exp report`).

`data` turns runs into what the page shows (JSON-ready, every text `printable`), `server`
answers the browser (aiohttp: the `ui` extra), `assets` knows the shipped front end
(`static/`: one page, one script, one stylesheet, the vendored chart libraries), and
`report` freezes page, script and data into one offline HTML file.
"""
