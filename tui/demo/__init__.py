"""The demo: generated Alma-shaped reports (:mod:`tui.demo.data`), the embedded SFTP server
that serves them on 127.0.0.1 (:mod:`tui.demo.server`) and the history a previous sync would
have left (:mod:`tui.demo.seed`).

It sits beside ``tui.core`` and ``tui.sftp``, not inside them: it uses both (the profile and
reports of the domain, the asyncssh server and the sync service), and neither may depend on
it. Nothing outside the demo command, ``--demo``, the tests and the benchmarks imports it.
"""
