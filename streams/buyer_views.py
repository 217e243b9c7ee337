"""HTTP routes of the buyer desk (issue 15), registered on the worker's Faust web server.

``GET /sales/{sale_id}/plan`` (the stocking plan the desk would send now), ``GET /buyers`` (every buyer with a
record), ``GET /buyers/{buyer_id}`` (the scorecard, JSON), ``GET /dashboard/buyers/{buyer_id}`` (the same as a
page). Every worker reads the outcomes and the catalogue whole, so any worker answers, whatever its role.
"""

from __future__ import annotations

from faust.web import Request, Response, View

from salepulse.streams.app import app, buyer_desk
from salepulse.streams.buyer_desk import scorecard_html
from salepulse.streams.views import HTTPProblem, _dumps, handled


@app.page("/sales/{sale_id}/plan")
class SalePlan(View):
    @handled("/sales/{sale_id}/plan")
    async def get(self, request: Request, sale_id: str) -> Response:
        """Units to position per sku (and per warehouse when regions are known), with the reason of each."""
        plan = buyer_desk.plan_view(sale_id)
        if plan is None:
            raise HTTPProblem(404, f"no sale {sale_id!r} in the catalogue")
        return self.json(_dumps(plan))


@app.page("/buyers")
class Buyers(View):
    @handled("/buyers")
    async def get(self, request: Request) -> Response:
        return self.json({"buyers": _dumps(buyer_desk.buyers())})


@app.page("/buyers/{buyer_id}")
class BuyerScorecard(View):
    @handled("/buyers/{buyer_id}")
    async def get(self, request: Request, buyer_id: str) -> Response:
        """Past bias, 80 % range coverage, the learned correction and why, the last sales: forecast vs actual."""
        card = buyer_desk.scorecard(buyer_id)
        if card is None:
            raise HTTPProblem(404, f"no finished sale forecast by {buyer_id!r} yet")
        return self.json(_dumps(card))


@app.page("/dashboard/buyers/{buyer_id}")
class BuyerPage(View):
    async def get(self, request: Request, buyer_id: str) -> Response:
        card = buyer_desk.scorecard(buyer_id)
        if card is None:
            return self.html(f"<p>No finished sale forecast by {buyer_id} yet.</p>", status=404)
        return self.html(scorecard_html(card))
