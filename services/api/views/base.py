"""What every EAS-compatible view shares: RequestId in each body, query/body validation, service lookup."""

from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from services.models import Service
from services.selectors import service_for


class EasView(APIView):
    def respond(self, request: Request, body: dict | None = None, status: int = 200) -> Response:
        return Response({**(body or {}), "RequestId": request.request_id}, status=status)

    def accepted(self, request: Request, message: str) -> Response:
        """Long operations record intent and return at once; the deployer acts afterwards."""
        return self.respond(request, {"Message": message}, status=202)

    def query(self, serializer_class, request: Request) -> dict:
        serializer = serializer_class(data=request.query_params)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    def body(self, serializer_class, request: Request) -> dict:
        serializer = serializer_class(data=request.data if isinstance(request.data, dict) else {})
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    def service(self, request: Request, cluster_id: str, service_name: str, *, write: bool = False) -> Service:
        return service_for(request.user, cluster_id, service_name, write=write)


def page_body(page, key: str, items: list, *, number_key: str = "PageNumber") -> dict:
    body = {key: items, number_key: page.number, "PageSize": page.size, "TotalCount": page.total}
    if number_key == "PageNum":
        body["TotalPageNum"] = page.page_count
    return body
