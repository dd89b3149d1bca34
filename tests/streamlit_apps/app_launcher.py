"""Test launcher: an st.App with its own middleware, which marks every response.

If OriginGuard is outermost, refused responses never carry the mark.
"""

import streamlit as st
from starlette.middleware import Middleware


class MarkResponses:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        async def marked(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-user-middleware", b"ran")]}
            await send(message)

        await self.app(scope, receive, marked)


app = st.App("show_context.py", middleware=[Middleware(MarkResponses)])
